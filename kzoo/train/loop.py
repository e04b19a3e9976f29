"""The kzoo training loop: distributed steps, exact resume, divergence checks, logging.

Why not `model.fit`: fit restarts an epoch from its first batch on resume (so a job
killed mid-epoch cannot continue at the exact data position), sums and clips gradients
per replica (so clipping differs between one device and several), exposes no gradient
norm, and has known multi-worker problems under Keras 3 (keras-team/keras#20585). The
loop below keeps Keras for everything else: the model's compiled loss and metrics
(`compute_loss`, `compute_metrics`), its optimizers and loss scaling, `Progbar`.

The backend's steps do the compiled work: `kzoo.train.tf_steps` (TensorFlow, under a
`tf.distribute` strategy) and `kzoo.train.jax_steps` (JAX, under `keras.distribution`). One
step consumes one global batch and updates the weights from the global gradient, clipped
by its global norm, whatever the number of devices; everything else here (calls and their
boundaries, checks, checkpoints, history, TensorBoard) is the same for both, and so are
the checkpoints: a run started under one backend resumes under the other.

Host syncs: one call of the compiled train function runs several steps in a graph loop
(`train.steps_per_execution`; by default up to the next log, eval or checkpoint step) and
returns every step's loss, gradient norm and counts at once. Reading them is the only host
sync, so an accelerator runs the steps back to back instead of idling while Python reads a
loss after each one. The values are still checked step by step: a non-finite loss names
its own step, and nothing is saved after it, because checkpoints are written only between
calls, after the check.

The data position is the number of global batches consumed, which equals the step:
the input pipeline is deterministic for its seed, so resuming at step `k` replays the
stream with its first `k` batches skipped and continues exactly where the run stopped.

Nothing in the output folder is destroyed before a step succeeds: the folder is checked
(writable, `checkpoints` a folder, `history.jsonl` well-formed) and the resume mode
and config compared with the checkpoints' before training; records past the resumed
step are dropped from `history.jsonl` only when the first new record is appended.
"""

import contextlib
import json
import math
import os
import tempfile
import time

import keras
import numpy as np

from kzoo.run_directory import RunDirectory
from kzoo.train import optimization
from kzoo.train import strategy as strategies
from kzoo.train.batches import build_compiled_state
from kzoo.train.checkpoint import CheckpointManager, RunFolderError, run_lock, to_numpy
from kzoo.train.config import ConfigError, TrainConfig, to_dict
from kzoo.train.summaries import Summaries

# Under mixed_float16 a non-finite gradient is skipped by the loss-scale optimizer; this
# many in a row means the run itself diverged.
MAX_CONSECUTIVE_SKIPPED_STEPS = 25


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/Inf; the checkpoints on disk are untouched."""


class Trainer:
    """Trains a compiled Keras model on a `tf.data` pipeline under a distribution strategy.

    Args:
        model: a Keras model built under `strategy.scope()` and compiled (loss, metrics and
            the optimizer from `optimization.build_optimizer`).
        config: the `TrainConfig`.
        strategy: what the model was built under: a `tf.distribute.Strategy` (TensorFlow) or a
            `kzoo.train.jax_distribution.JaxDistribution` (JAX); `kzoo.train.strategy.resolve` gives either.
        train_dataset: a finite `tf.data.Dataset` of global batches of
            `(inputs, targets[, sample_weight])`, deterministic for its seed (a kzoo.data
            pipeline with `batch_size` = the global batch). The loop repeats it; the
            strategy splits each global batch across replicas and workers, so every step
            sees the same examples whatever the number of devices.
        eval_dataset: the same for held-out data, or None.
        evaluators: callables `fn(model, results) -> dict` run at every evaluation after the
            held-out loss and compiled metrics are in `results`; float values are
            logged as eval scalars (and returned), str values as markdown text (e.g. sample
            generations), uint8 `(height, width, 3)` numpy arrays as images (e.g. a
            confusion matrix; `kzoo.visualize.figures.to_pixels`).
        attention_example: optional inputs dict of one example (batch of one); its labelled attention
            maps (`kzoo.visualize`) are logged as images at every evaluation (needs `model.backbone`).
        token_label: `fn(id) -> str` for the attention maps' axes (a tokenizer's `id_to_token`);
            default: the ids.
        output_dir: checkpoints in `<output_dir>/checkpoints`, TensorBoard logs in
            `<output_dir>/logs`.
        run_config: JSON-able dict of everything the checkpoints depend on (a recipe's whole config, its
            tokenizer files' hashes); recorded in every checkpoint and compared on resume
            (`CheckpointManager.check_resume`). Default: `{"train": <config as a dict>}`.
    """

    def __init__(self, model, config: TrainConfig, strategy, train_dataset, eval_dataset=None,
                 evaluators=(), attention_example=None, output_dir=None, run_config=None, token_label=str):
        check_backend()
        self.model = model
        self.config = config
        self.strategy = strategy
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.evaluators = list(evaluators)
        self.attention_example = attention_example
        self.token_label = token_label
        self.output_dir = output_dir or config.output_dir
        self.run_config = run_config if run_config is not None else {"train": to_dict(config)}
        self.chief = strategies.is_chief(strategy)
        self.optimizer = model.optimizer
        self.run_directory = RunDirectory(self.output_dir)
        self.checkpoints = CheckpointManager(self.run_directory.checkpoints, model, self.optimizer,
                                             keep=config.keep_checkpoints, writer=self.chief)
        if self.chief:
            check_writable(self.output_dir)  # before the TensorBoard writers try to create their folders
            logs = self.run_directory.logs
            if os.path.exists(logs) and not os.path.isdir(logs):
                raise RunFolderError(f"{logs} is a file, not a folder: move it away, or choose another "
                                     "--train.output_dir.")
        self.summaries = Summaries(self.run_directory.logs, enabled=self.chief)
        self._compiled_state_built = False
        self.backend_steps = _backend_steps(model, config, strategy)
        self._truncate_history_to = None  # the resumed step, until the first record of this run is appended
        self._step = 0  # the last step whose result was read back
        self.skipped_steps = []  # steps whose update the loss-scale optimizer skipped (mixed_float16)

    def _steps_in_next_call(self, step, profile):
        """How many steps the next train-function call runs: up to `steps_per_execution` (0: no limit),
        ending at the next log, eval, checkpoint or profile boundary and at the last step."""
        config = self.config
        count = config.steps - step
        if config.steps_per_execution:
            count = min(count, config.steps_per_execution)
        for every in (config.log_every, config.eval_every, config.checkpoint_every):
            count = min(count, every - step % every)
        for boundary in (profile[0] - 1, profile[1]) if profile else ():
            if boundary > step:
                count = min(count, boundary - step)
        return count

    def build_compiled_state(self):
        """Creates the compiled loss/metric variables under the strategy, once (`batches.build_compiled_state` on the
        first training batch): the JAX steps pass them in and out of the compiled functions, so they must exist
        before the first trace."""
        if self._compiled_state_built:
            return
        self._compiled_state_built = True
        build_compiled_state(self.model, self.strategy, next(self.train_dataset.take(1).as_numpy_iterator()))

    def _metric_results(self):
        results = {}
        for name, value in self.model.get_metrics_result().items():
            if name != "loss":  # the loss is tracked by the loop itself (Keras' tracker is not updated)
                results[name] = float(to_numpy(value))
        return results

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self, step=None):
        """Held-out loss, compiled metrics and evaluator results, logged to `eval/` at `step`."""
        results = {}
        if self.eval_dataset is not None:
            self.build_compiled_state()
            self.model.reset_metrics()
            losses = self.backend_steps.evaluate(self.eval_dataset, self.config.eval_steps)
            if losses:
                results["loss"] = float(np.mean(losses))
                results.update(self._metric_results())
            self.model.reset_metrics()
        texts, images = {}, {}
        for evaluator in self.evaluators:
            for name, value in evaluator(self.model, results).items():
                if isinstance(value, str):
                    texts[name] = value
                elif isinstance(value, np.ndarray):
                    images[name] = value
                else:
                    results[name] = value
        if step is not None:
            self.summaries.scalars(self.summaries.eval, step, results)
            self.summaries.texts(self.summaries.eval, step, texts)
            self.summaries.images(self.summaries.eval, step, images)
            if self.attention_example is not None and hasattr(self.model, "backbone") and self.summaries.enabled:
                from kzoo.visualize.attention import attention_maps

                maps = attention_maps(self.model.backbone, self.attention_example, self.token_label)
                self.summaries.attention_maps(step, maps)
            self.summaries.flush()
        return results

    # --- the loop -------------------------------------------------------------------------------

    def check_output_dir(self):
        """Raises `RunFolderError` (or `ConfigError` for the resume mode and config) before anything is changed:
        the output folder must be writable, `checkpoints` a folder, `history.jsonl` well-formed."""
        if self.chief:
            check_writable(self.output_dir)
            read_history(self.run_directory.history)
        self.checkpoints.check_resume(self.config.resume, self.run_config)

    def fit(self):
        """Runs (or resumes) training to `config.steps`; returns a summary dict.

        The chief holds the output folder's lock (`checkpoint.run_lock`) meanwhile: a second run into the same
        folder is refused instead of interleaving its checkpoints and history with this one's."""
        with run_lock(self.output_dir) if self.chief else contextlib.nullcontext():
            return self._fit()

    def _fit(self):
        config = self.config
        self.check_output_dir()
        restored = self.checkpoints.restore_latest()
        start_step = int(restored["step"]) if restored else 0
        history_path = self.run_directory.history
        if start_step >= config.steps:
            return self._result(start_step, start_step, 0.0, history_path, resumed_from=start_step)
        self._truncate_history_to = start_step
        self.build_compiled_state()
        batches = self.backend_steps.train_batches(self.train_dataset, start_step)
        progress = keras.utils.Progbar(config.steps, verbose=config.verbose if self.chief else 0,
                                       stateful_metrics=["learning_rate", "loss_scale"])
        if start_step:
            progress.update(start_step)
        profile = config.profile_range()
        window = {"loss": [], "norm": [], "tokens": 0.0, "examples": 0.0, "started": time.perf_counter()}
        started = time.perf_counter()
        self._step = start_step
        try:
            step = self._train_loop(start_step, batches, progress, profile, window, history_path)
        except self.backend_steps.collective_errors as error:
            lost = self._peer_failure(error, self._step)
            if lost is None:
                raise
            raise lost from None
        seconds = time.perf_counter() - started
        return self._result(start_step, step, seconds, history_path, resumed_from=start_step or None)

    def _peer_failure(self, error, step):
        """A `WorkerLost` for a collective op's failure caused by a dead peer of a multi-worker job, else None."""
        workers = strategies.worker_count(self.strategy)
        if workers < 2:
            return None
        resolver = self.strategy.cluster_resolver
        lost = strategies.lost_peer(error, (resolver.task_type, resolver.task_id))
        if lost is None:
            return None
        last = self.checkpoints.latest_step()
        where = f" (step {last}, {self.checkpoints.path(last)})" if last is not None else " (none yet: from step 0)"
        return strategies.WorkerLost(
            f"lost {lost[0]} after step {step} ({lost[1]}); this worker cannot go on alone. Rerun all {workers} "
            f"workers with the same command and TF_CONFIG: they resume from the newest checkpoint{where}.")

    def _train_loop(self, step, batches, progress, profile, window, history_path):
        """The steps from `step` to `config.steps`; returns the last step run."""
        config = self.config
        skipped_in_a_row = 0
        while step < config.steps:
            count = self._steps_in_next_call(step, profile)
            if profile and step + 1 == profile[0] and self.chief:
                self.backend_steps.start_profile(self.summaries.logdir)
            losses, norms, tokens, examples, learning_rates = self.backend_steps.train(batches, count)  # the host sync
            for index in range(count):
                step += 1
                self._step = step
                loss, norm, learning_rate = float(losses[index]), float(norms[index]), float(learning_rates[index])
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    skipped_in_a_row = self._on_non_finite(step, loss, norm, skipped_in_a_row)
                    continue
                skipped_in_a_row = 0
                window["loss"].append(loss)
                window["norm"].append(norm)
                window["tokens"] += float(tokens[index])
                window["examples"] += float(examples[index])
                progress.update(step, [("loss", loss), ("learning_rate", learning_rate)])
            if profile and step == profile[1] and self.chief:
                self.backend_steps.stop_profile()
            # Calls end at these boundaries, so each one is met exactly (after a skipped step too).
            if step % config.log_every == 0 or step == config.steps:
                self._log_train(step, window, float(learning_rates[-1]), history_path)
                window = {"loss": [], "norm": [], "tokens": 0.0, "examples": 0.0, "started": time.perf_counter()}
            if step % config.eval_every == 0 or step == config.steps:
                self._log_history(history_path, {"step": step, "eval": self.evaluate(step)})
            if step % config.checkpoint_every == 0 or step == config.steps:
                self.checkpoints.save(step, extra={"config": self.run_config})
        return step

    def _on_non_finite(self, step, loss, norm, skipped_in_a_row):
        last = self.checkpoints.latest_step()
        where = (f"the last good checkpoint (step {last}) is {self.checkpoints.path(last)}" if last is not None
                 else "no checkpoint had been written yet")
        if self.config.precision == "mixed_float16":
            # The loss-scale optimizer skipped this update and halved the scale: weights stay finite.
            skipped_in_a_row += 1
            self.skipped_steps.append(step)
            if skipped_in_a_row < MAX_CONSECUTIVE_SKIPPED_STEPS:
                self.summaries.scalars(self.summaries.train, step, {
                    "skipped_step": 1.0, "loss_scale": optimization.loss_scale(self.optimizer)})
                return skipped_in_a_row
            raise TrainingDiverged(
                f"{skipped_in_a_row} consecutive non-finite steps under mixed_float16 (step {step}, loss {loss}, "
                f"gradient norm {norm}): training diverged. {where}; lower --train.learning_rate or use "
                "--train.precision=mixed_bfloat16.")
        raise TrainingDiverged(
            f"loss {loss} / gradient norm {norm} at step {step} is not finite: training stopped before "
            f"anything was saved. {where}. Lower --train.learning_rate, set --train.clip_norm, or check the "
            "data for broken examples; resuming starts from that checkpoint.")

    def _log_train(self, step, window, learning_rate, history_path):
        seconds = max(time.perf_counter() - window["started"], 1e-9)
        values = {
            "loss": float(np.mean(window["loss"])) if window["loss"] else None,
            "learning_rate": learning_rate,
            "gradient_norm": float(np.mean(window["norm"])) if window["norm"] else None,
            "tokens_per_second": window["tokens"] / seconds,
            "examples_per_second": window["examples"] / seconds,
            **self._metric_results(),
        }
        if self.config.precision == "mixed_float16":
            values["loss_scale"] = optimization.loss_scale(self.optimizer)
        self.model.reset_metrics()
        self.summaries.scalars(self.summaries.train, step, values)
        self._log_history(history_path, {"step": step, "train": values})

    def _truncate_history(self, path, step):
        """Drops records of steps after `step` (logged by a run that died before its next checkpoint), and a torn
        last line (a kill in the middle of an append). The kept records are written to a temporary file that
        replaces the history in one rename, so a kill during this rewrite loses nothing."""
        if not self.chief or not os.path.exists(path):
            return
        kept = [json.dumps(record) + "\n" for record in read_history(path) if record["step"] <= step]
        partial = f"{path}.partial"
        with open(partial, "w", encoding="utf-8") as file:
            file.writelines(kept)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    def _log_history(self, path, record):
        if self.chief:
            if self._truncate_history_to is not None:  # the first record of this run: only now drop the old ones
                self._truncate_history(path, self._truncate_history_to)
                self._truncate_history_to = None
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def _result(self, start_step, step, seconds, history_path, resumed_from=None):
        train, evaluation = [], []
        for record in read_history(history_path):
            if record["step"] > step:  # a killed run's records this run did not reach (nothing new was logged)
                continue
            (train if "train" in record else evaluation).append(record)
        return {
            "steps": step, "steps_this_run": step - start_step, "seconds": seconds, "resumed_from": resumed_from,
            "skipped_steps": list(self.skipped_steps),
            "first_loss": train[0]["train"]["loss"] if train else None,
            "last_loss": train[-1]["train"]["loss"] if train else None,
            "loss_steps": [train[0]["step"], train[-1]["step"]] if train else None,  # where first/last were logged
            "eval": evaluation[-1]["eval"] if evaluation else {},
            "checkpoint": self.checkpoints.path(step) if self.checkpoints.latest_step() == step else None,
            "logdir": self.summaries.logdir,
        }


# --- the run folder ---------------------------------------------------------------------------------


TRAINING_BACKENDS = ("tensorflow", "jax")


def check_backend():
    """Raises `ConfigError` unless Keras runs on a backend kzoo trains under (TensorFlow or JAX): under another one
    the run would fail deep inside the first step."""
    backend = keras.backend.backend()
    if backend not in TRAINING_BACKENDS:
        raise ConfigError(f"kzoo trains under the TensorFlow and JAX backends, and KERAS_BACKEND is {backend!r}: "
                          "rerun with KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow.")


def _backend_steps(model, config, strategy):
    """The compiled steps of the running Keras backend (`check_backend` has passed)."""
    if keras.backend.backend() == "jax":
        from kzoo.train.jax_steps import JaxSteps

        return JaxSteps(model, config, strategy)
    from kzoo.train.tf_steps import TensorFlowSteps

    return TensorFlowSteps(model, config, strategy)


def check_writable(directory):
    """Creates `directory` if needed and proves it writable (a probe file); raises `RunFolderError` otherwise."""
    directory = directory or "."  # an empty output_dir: the working directory, as os.path.join reads it
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise RunFolderError(f"cannot write to the output folder {directory} ({error.strerror or error}): make it "
                             "a writable folder, or choose another --train.output_dir.") from None


def read_history(path):
    """The records of a run's `history.jsonl` (none if it does not exist), checked.

    A torn last line (a kill in the middle of an append: no final newline) is left out. Any
    other line that is not a JSON object with an integer `step` raises `RunFolderError`
    naming the file and line: the history is never rewritten around damage it does not
    understand.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise RunFolderError(f"cannot read {path} ({getattr(error, 'strerror', None) or error}): move it away, or "
                             "choose another --train.output_dir.") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        torn = number == len(lines)  # the last piece, without its newline
        try:
            record = json.loads(line)
        except ValueError:
            if torn:
                continue
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            if torn and isinstance(record, dict):
                continue
            raise RunFolderError(f"{path} line {number} is not a history record (a JSON object with an integer "
                                 f"step): {line[:60]!r}; repair or delete that line, or move the file away.")
        records.append(record)
    return records
