"""TensorBoard output of a training run: scalars, text, images (attention maps, task pictures), hparams.

Layout under `<output_dir>/logs/`: `train/` (loss, learning rate, gradient norm,
throughput, training metrics) and `eval/` (held-out loss and task metrics, sample
generations, labelled attention maps, evaluators' pictures). The resolved config is text and, flattened, the
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

    def images(self, writer, step, values):
        """Logs uint8 `(height, width, channels)` arrays as images."""
        with writer.as_default(step=step):
            for name, pixels in values.items():
                tf.summary.image(name, np.asarray(pixels)[None], max_outputs=1)

    def config(self, config_dict, yaml_text):
        """The resolved config as text, and as hparams (flattened dotted keys)."""
        if not self.enabled:
            return
        from tensorboard.plugins.hparams import api as hp

        with self.train.as_default(step=0):
            tf.summary.text("config", "```\n" + yaml_text + "\n```")
            hp.hparams(_flatten_hparams(config_dict))

    def attention_maps(self, step, maps):
        """Logs labelled attention heatmaps (`kzoo.visualize.heatmap`) as eval images, one per layer and kind:
        `attention/self_attention_layer_0`, ..., for seq2seq `attention/cross_attention_layer_0` too.

        Args:
            maps: `kzoo.visualize.attention.AttentionMap`s of one example.
        """
        if not self.enabled:
            return
        from kzoo.visualize.heatmap import layer_pixels

        with self.eval.as_default(step=step):
            for attention_map in maps:
                tf.summary.image(f"attention/{attention_map.name}", layer_pixels(attention_map)[None], max_outputs=1,
                                 description=f"{attention_map.title}: rows are queries, columns keys; grey hatched "
                                             "cells are masked (padding or future positions).")

    def flush(self):
        if self.enabled:
            self.train.flush()
            self.eval.flush()


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
