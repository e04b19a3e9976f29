"""TensorBoard output of a training run: scalars, text, the attention map, hparams.

Layout under `<output_dir>/logs/`: `train/` (loss, learning rate, gradient norm,
throughput, training metrics) and `eval/` (held-out loss and task metrics, sample
generations, the attention map). The resolved config is text and, flattened, the
hparams of the run (TensorBoard's HPARAMS tab), with the final eval metrics.
"""

import os

import numpy as np
import tensorflow as tf


class Summaries:
    """The run's TensorBoard writers; on non-chief workers every call does nothing."""

    def __init__(self, logdir, enabled=True):
        self.logdir = logdir
        self.enabled = enabled
        if enabled:
            self.train = tf.summary.create_file_writer(os.path.join(logdir, "train"))
            self.eval = tf.summary.create_file_writer(os.path.join(logdir, "eval"))
        else:
            self.train = self.eval = tf.summary.create_noop_writer()

    def scalars(self, writer, step, values):
        with writer.as_default(step=step):
            for name, value in values.items():
                if value is not None and np.isfinite(value):
                    tf.summary.scalar(name, float(value))

    def texts(self, writer, step, values):
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.text(name, value)

    def config(self, config_dict, yaml_text):
        """The resolved config as text, and as hparams (flattened dotted keys)."""
        if not self.enabled:
            return
        from tensorboard.plugins.hparams import api as hp

        with self.train.as_default(step=0):
            tf.summary.text("config", "```\n" + yaml_text + "\n```")
            hp.hparams(_flatten_hparams(config_dict))

    def attention_map(self, step, scores, title="attention"):
        """Logs one example's attention probabilities as images, one per layer, heads side by side.

        Args:
            scores: list (layers) of arrays `(h, s, t)` for one example.
        """
        if not self.enabled:
            return
        with self.eval.as_default(step=step):
            for layer, probabilities in enumerate(scores):
                tf.summary.image(f"{title}/layer_{layer}", attention_image(probabilities), max_outputs=1)

    def flush(self):
        if self.enabled:
            self.train.flush()
            self.eval.flush()


def attention_image(probabilities, scale=4):
    """`(h, s, t)` probabilities -> a `(1, s*scale, h*(t+1)*scale, 1)` float image in [0, 1].

    Each head is a panel (rows: queries, columns: keys), normalized by its row maximum so
    the pattern is visible even where attention is spread; panels are separated by a
    one-pixel white column.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    heads, queries, keys = probabilities.shape
    row_max = np.maximum(probabilities.max(axis=-1, keepdims=True), 1e-9)
    panels = probabilities / row_max
    separator = np.ones((queries, 1), np.float32)
    tiled = np.concatenate([np.concatenate([panel, separator], axis=1) for panel in panels], axis=1)
    tiled = np.kron(tiled, np.ones((scale, scale), np.float32))
    return tiled[None, :, :, None]


def _flatten_hparams(mapping, prefix=""):
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_hparams(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat
