"""The Keras peers: kzoo and keras-hub, under the TensorFlow or the JAX backend.

Each `build_*` function returns `(run, info)`: `run(warmup, timed)` trains and returns
the timing dict of `timing.time_steps`; `info` describes what was built.

* kzoo: the compiled steps `kzoo.train.Trainer` trains with (`trainer.backend_steps`:
  `kzoo.train.tf_steps.TensorFlowSteps` or `kzoo.train.jax_steps.JaxSteps`), built by a
  Trainer on a `tf.data` dataset of the bench batch; `backend_steps.train(batches, n)` runs
  the `sync_every` steps of a timing window in one compiled call (a graph loop under
  TensorFlow, a `lax.fori_loop` with the state donated under JAX) and returns their losses
  and norms, as `Trainer.fit` calls it between log steps. Optimizer:
  `kzoo.train.build_optimizer` (AdamW, weight decay on matrices only, global-norm clipping
  at 1.0, warmup + linear decay).
  Without TensorFlow (GPU mode, `--no-tensorflow`) the Trainer cannot be built:
  `kzoo.train.loop` imports `kzoo.train.strategy` and `kzoo.train.summaries`, which import
  TensorFlow at module level, and the Trainer reads its batches with `tf.data`. There the
  same `JaxSteps` class is built directly (as `Trainer.__init__` builds it under JAX) and
  fed the batch from a Python iterator; the compiled step is the one users train with.
* keras-hub: `GPT2CausalLM` / `BertMaskedLM` (random init, `preprocessor=None`),
  compiled with its default loss and weighted accuracy and an AdamW with the same
  hyper-parameters (constant learning rate), trained with `model.fit`; a callback
  reads the loss after every batch (which waits for the step) and records the time
  between batch ends. `keras.Model.fit` is called directly: keras-hub's
  `PipelineModel.fit` would only add preprocessing (none here), and it needs TensorFlow
  or grain to batch non-`tf.data` inputs.
"""

import atexit
import shutil
import tempfile

LEARNING_RATE = 1e-4


def _keras_setup(precision):
    import keras

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    return keras


def _kzoo_model(spec, dropout, vocabulary_multiple=1, fused_loss=False):
    from kzoo import models

    sizes = dict(vocabulary_size=spec.vocabulary_size, num_layers=spec.num_layers, num_heads=spec.num_heads,
                 hidden_dim=spec.hidden_dim, intermediate_dim=spec.intermediate_dim,
                 max_sequence_length=spec.max_sequence_length, dropout=dropout)
    if spec.family == "gpt":
        return models.GPTCausalLM(models.GPTBackbone(**sizes, pad_vocabulary_to_multiple_of=vocabulary_multiple),
                                  fused_loss=fused_loss)
    return models.BertPretrainer(models.BertBackbone(**sizes, attention_dropout=dropout))


def _kzoo_data(spec, batch):
    """(x, y, sample_weight) for the kzoo task."""
    import numpy as np

    if spec.family == "gpt":
        x = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        return x, batch["targets"], batch["weights"]
    x = {name: batch[name] for name in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
    y = {"mlm_logits": batch["mlm_targets"], "nsp_logits": batch["nsp_labels"]}
    sample_weight = {"mlm_logits": batch["mlm_weights"],
                     "nsp_logits": np.ones(batch["nsp_labels"].shape, "float32")}
    return x, y, sample_weight


def train_config(spec, precision, xla, output_dir, steps_per_call=1):
    """The benchmark's `TrainConfig`: `steps_per_call` is the longest call of the train function (the Trainer ends
    its calls at log, eval and checkpoint steps; under JAX every call's batch stack has this length)."""
    from kzoo.train.config import TrainConfig  # needs only Keras: this works where TensorFlow is absent (GPU mode)

    return TrainConfig(
        steps=100_000, batch_size=spec.batch_size, learning_rate=LEARNING_RATE, warmup_steps=10,
        weight_decay=0.01, clip_norm=1.0, precision=precision, xla=xla, strategy="auto",
        output_dir=output_dir, verbose=0, log_every=steps_per_call, steps_per_execution=steps_per_call,
        eval_every=100_000, checkpoint_every=100_000,
    )


def _compiled_kzoo_model(spec, config, strategy, dropout, vocabulary_multiple, fused_loss):
    from kzoo.train import optimization

    with strategy.scope():
        model = _kzoo_model(spec, dropout, vocabulary_multiple, fused_loss)
        model.compile(optimizer=optimization.build_optimizer(config, model.trainable_variables))
    return model


def kzoo_trainer_steps(spec, batch, config, dropout=0.0, vocabulary_multiple=1, fused_loss=False):
    """(model, backend_steps, batches): the compiled steps of a `kzoo.train.Trainer` on a `tf.data` dataset of
    `batch`, and its endless batch stream; `backend_steps.train(batches, n)` runs n steps, as `Trainer.fit` does."""
    import tensorflow as tf

    from kzoo.train import Trainer
    from kzoo.train.strategy import resolve

    strategy = resolve(config)
    model = _compiled_kzoo_model(spec, config, strategy, dropout, vocabulary_multiple, fused_loss)
    dataset = tf.data.Dataset.from_tensors(_kzoo_data(spec, batch))
    trainer = Trainer(model, config, strategy, dataset, output_dir=config.output_dir)
    trainer.build_compiled_state()  # what Trainer.fit does first: the compiled loss and metric variables
    return model, trainer.backend_steps, trainer.backend_steps.train_batches(dataset, 0)


def kzoo_jax_steps_without_tensorflow(spec, batch, config, dropout=0.0, vocabulary_multiple=1, fused_loss=False):
    """`kzoo_trainer_steps` where TensorFlow is absent (see the module docstring): the Trainer's `JaxSteps`, built
    as `Trainer.__init__` builds them under JAX, on a Python iterator repeating `batch`."""
    import itertools

    from kzoo.train import jax_distribution
    from kzoo.train.batches import build_compiled_state
    from kzoo.train.jax_steps import JaxSteps

    distribution = jax_distribution.resolve(config.strategy, config.devices)
    model = _compiled_kzoo_model(spec, config, distribution, dropout, vocabulary_multiple, fused_loss)
    data = _kzoo_data(spec, batch)
    build_compiled_state(model, distribution, data)  # what Trainer.fit does first
    return model, JaxSteps(model, config, distribution), itertools.repeat(data)


def _xla_temp_bytes(backend_steps, data):
    """XLA's planned scratch memory of the JAX train function (bytes; activations and temporaries, not the state),
    or None: `JaxSteps.memory_analysis` of the bench batch."""
    analysis = backend_steps.memory_analysis(data)
    return int(analysis.temp_size_in_bytes) if analysis is not None else None


def build_kzoo(spec, batch, backend, precision, xla, dropout, vocabulary_multiple=1, fused_loss=False,
               steps_per_call=1, without_tensorflow=False):
    """kzoo timed through the Trainer's compiled steps; `steps_per_call` is the timing's `sync_every`, and
    `without_tensorflow` (JAX only) builds them without the Trainer (see the module docstring)."""
    _keras_setup(precision)
    output_dir = tempfile.mkdtemp(prefix="bench_train_kzoo_")  # the Trainer's (unused) logs and checkpoints
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    config = train_config(spec, precision, xla, output_dir, steps_per_call)
    build = kzoo_jax_steps_without_tensorflow if without_tensorflow else kzoo_trainer_steps
    model, backend_steps, batches = build(spec, batch, config, dropout, vocabulary_multiple, fused_loss)
    pending = [0]

    def step(sync):
        # As Trainer.fit: the steps of a window run in one call, whose per-step losses and norms are read at its end.
        pending[0] += 1
        if not sync:
            return None
        losses, norms, _, _, _ = backend_steps.train(batches, pending[0])
        pending[0] = 0
        float(norms[-1])
        return float(losses[-1])

    built = " (built without the Trainer, which needs TensorFlow)" if without_tensorflow else ""
    info = {"step": f"kzoo.train.Trainer's {type(backend_steps).__name__}.train{built}, up to {steps_per_call} "
                    f"step(s) per call" + (", XLA" if xla and backend == "tensorflow" else ""),
            "parameters": int(model.count_params())}
    if spec.family == "gpt":
        info["vocabulary_rows"] = int(model.backbone.token_embedding.table_rows)
        info["fused_loss"] = model.fused_loss
        attention = model.backbone.decoder_blocks[0].self_attention
    else:
        attention = model.backbone.encoder_blocks[0].self_attention
    # What MultiHeadAttention does in this training step (fused under JAX on a GPU/TPU without attention dropout).
    info["attention"] = "fused ops.dot_product_attention" if attention._can_fuse(training=True) else (
        "explicit softmax(QK^T)V")

    def run(warmup, timed, sync_every=1):
        from tools.bench.timing import time_steps

        timing = time_steps(step, warmup, timed, sync_every)
        if backend == "jax":
            info["xla_temp_bytes"] = _xla_temp_bytes(backend_steps, _kzoo_data(spec, batch))
        return timing

    return run, info


def _keras_hub_model(spec, dropout):
    import keras_hub

    sizes = dict(vocabulary_size=spec.vocabulary_size, num_layers=spec.num_layers, num_heads=spec.num_heads,
                 hidden_dim=spec.hidden_dim, intermediate_dim=spec.intermediate_dim, dropout=dropout,
                 max_sequence_length=spec.max_sequence_length)
    if spec.family == "gpt":
        return keras_hub.models.GPT2CausalLM(backbone=keras_hub.models.GPT2Backbone(**sizes), preprocessor=None)
    return keras_hub.models.BertMaskedLM(backbone=keras_hub.models.BertBackbone(**sizes), preprocessor=None)


def keras_hub_data(spec, batch):
    """(x, y, sample_weight) for the keras-hub task."""
    if spec.family == "gpt":
        x = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        return x, batch["targets"], batch["weights"]
    x = {name: batch[name] for name in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
    return x, batch["mlm_targets"], batch["mlm_weights"]


def keras_hub_compiled(keras, spec, dropout, jit_compile):
    """keras-hub's task for `spec`, compiled with its default loss and weighted accuracy and the benchmark's
    AdamW (no weight decay on 1-D variables, global-norm clipping at 1.0)."""
    model = _keras_hub_model(spec, dropout)
    optimizer = keras.optimizers.AdamW(learning_rate=LEARNING_RATE, weight_decay=0.01, beta_1=0.9, beta_2=0.999,
                                       epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    return model


def build_keras_hub(spec, batch, backend, precision, xla, dropout):
    keras = _keras_setup(precision)
    jit_compile = True if backend == "jax" else bool(xla)
    model = keras_hub_compiled(keras, spec, dropout, jit_compile)
    data = keras_hub_data(spec, batch)
    info = {"parameters": int(model.count_params()),
            "step": f"model.fit (jit_compile={jit_compile}), callback reads the loss after each batch"}

    def run(warmup, timed, sync_every=1):
        return _fit_timing(keras, model, data, backend, warmup, timed, sync_every)

    return run, info


def _fit_timing(keras, model, data, backend, warmup, timed, sync_every=1):
    """Times `model.fit` from a callback: the warm-up batches each read their loss (a
    host sync); after them the loss is read only at the end of every `sync_every`-th
    batch, and the time between those reads / `sync_every` is one step time."""
    import time

    from tools.bench.timing import summarize

    if timed % sync_every:
        raise ValueError(f"timed steps ({timed}) must be a multiple of sync_every ({sync_every})")
    skip = max(warmup, 1)
    steps = skip + timed
    ends, cpu_ends, losses = [], [], []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                ends.append(time.perf_counter())
                cpu_ends.append(time.process_time())

        def on_train_batch_end(self, batch, logs=None):
            if batch < skip or (batch + 1 - skip) % sync_every == 0:
                losses.append(float(logs["loss"]))  # waits for the step
                ends.append(time.perf_counter())
                cpu_ends.append(time.process_time())

    if backend == "tensorflow":
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensors(data).repeat()
    else:
        def generator():
            while True:
                yield data

        dataset = generator()
    started = time.perf_counter()
    # keras.Model.fit, not keras-hub's PipelineModel.fit: with preprocessor=None they train
    # the same, but PipelineModel.fit turns non-tf.data inputs into a tf.data or grain
    # dataset, so it needs TensorFlow or grain, which a JAX-only GPU machine may lack.
    keras.Model.fit(model, dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                    callbacks=[StepTimer()])
    total = time.perf_counter() - started
    intervals = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]
    cpu_intervals = [b - a for a, b in zip(cpu_ends[:-1], cpu_ends[1:], strict=True)]
    result = summarize(intervals[0], sum(intervals[:skip]), [t / sync_every for t in intervals[skip:]],
                       [t / sync_every for t in cpu_intervals[skip:]], losses)
    result["fit_call_s"] = total
    result["sync_every"] = sync_every
    return result


def ceiling_framework(backend):
    return "tensorflow" if backend == "tensorflow" else "jax"


def device_name(backend):
    """The accelerator JAX uses (GPU mode), or None."""
    if backend != "jax":
        return None
    import jax

    device = jax.devices()[0]
    return device.device_kind if device.platform == "gpu" else None


def environment_check(backend, device):
    """Raises RuntimeError when GPU mode would not run on a GPU."""
    if device != "gpu":
        return
    import jax

    if jax.default_backend() != "gpu":
        raise RuntimeError(f"--device gpu: JAX runs on {jax.default_backend()!r}, not on a GPU "
                           f"(devices: {jax.devices()}). Install jax[cuda12] on a CUDA machine.")
