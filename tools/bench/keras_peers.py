"""The Keras peers: kzoo and keras-hub, under the TensorFlow or the JAX backend.

Each `build_*` function returns `(run, info)`: `run(warmup, timed)` trains and returns
the timing dict of `timing.time_steps`; `info` describes what was built.

* kzoo, TensorFlow: `kzoo.train.Trainer`'s own train function (`_make_train_function`:
  a graph loop of `strategy.run` of the replica step, a `tf.function`, XLA when `--xla`)
  on a `tf.data` iterator; the `sync_every` steps of a timing window run in one call whose
  losses and norms are then read, as `Trainer.fit` does with `steps_per_execution`.
  Optimizer: `kzoo.train.build_optimizer` (AdamW, weight decay on matrices only,
  global-norm clipping at 1.0, warmup + linear decay).
* kzoo, JAX: a `jax.jit` stateless step (state donated) doing what the TF replica step
  does: `compute_loss_and_updates` under `value_and_grad`, the global gradient norm,
  `optimizer.stateless_apply` (the same `build_optimizer` optimizer) and the compiled
  metrics; `float(loss)`, `float(norm)` per step.
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


def _train_config(spec, precision, xla, output_dir):
    # Both modules need only Keras: this works where TensorFlow is absent (GPU mode).
    from kzoo.train import config as config_module
    from kzoo.train import optimization

    config = config_module.TrainConfig(
        steps=100_000, batch_size=spec.batch_size, learning_rate=LEARNING_RATE, warmup_steps=10,
        weight_decay=0.01, clip_norm=1.0, precision=precision, xla=xla, strategy="default",
        output_dir=output_dir, verbose=0,
    )
    return optimization, config


def build_kzoo(spec, batch, backend, precision, xla, dropout, vocabulary_multiple=1, fused_loss=False):
    keras = _keras_setup(precision)
    output_dir = tempfile.mkdtemp(prefix="bench_train_kzoo_")  # the Trainer's (unused) logs and checkpoints
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    optimization, config = _train_config(spec, precision, xla, output_dir)
    x, y, sample_weight = _kzoo_data(spec, batch)
    info = {}
    if backend == "tensorflow":
        model, train_function, iterator = kzoo_trainer_function(
            spec, batch, config, dropout, vocabulary_multiple, fused_loss)
        pending = [0]

        def step(sync):
            # As Trainer.fit with steps_per_execution = sync_every: the steps of a window run in one call
            # (a graph loop), whose per-step losses and norms are read once at its end.
            pending[0] += 1
            if not sync:
                return None
            losses, norms, _, _, _ = train_function(iterator, pending[0])
            pending[0] = 0
            float(norms[-1])
            return float(losses[-1])

        info.update(step="kzoo.train.Trainer train function (tf.function" + (", XLA)" if xla else ", no XLA)"))
    else:
        model = _kzoo_model(spec, dropout, vocabulary_multiple, fused_loss)
        optimizer = optimization.build_optimizer(config, model.trainable_variables)
        model.compile(optimizer=optimizer)
        step = _jax_stateless_step(keras, model, optimizer, (x, y, sample_weight), info)
        info.update(step="jax.jit stateless step (compute_loss_and_updates + stateless_apply, state donated)")
    info["parameters"] = int(model.count_params())
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

        return time_steps(step, warmup, timed, sync_every)

    return run, info


def kzoo_trainer_function(spec, batch, config, dropout=0.0, vocabulary_multiple=1, fused_loss=False):
    """(model, train_function, iterator): `kzoo.train.Trainer`'s own train function (TensorFlow backend) on an
    endless iterator over `batch`; `train_function(iterator, n)` runs n steps, as `Trainer.fit` does."""
    import tensorflow as tf

    from kzoo.train import Trainer, optimization

    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = _kzoo_model(spec, dropout, vocabulary_multiple, fused_loss)
        model.compile(optimizer=optimization.build_optimizer(config, model.trainable_variables))
    dataset = tf.data.Dataset.from_tensors(_kzoo_data(spec, batch))
    trainer = Trainer(model, config, strategy, dataset, output_dir=config.output_dir)
    trainer._build_compiled_state()
    return model, trainer._make_train_function(), iter(trainer._distributed_train_data(0))


def _jax_stateless_step(keras, model, optimizer, data, info):
    """A jitted step on the model's and optimizer's state, as the TF replica step. The first call
    compiles it and records XLA's planned scratch memory for it in `info["xla_temp_bytes"]`."""
    import functools

    import jax
    import jax.numpy as jnp

    x, y, sample_weight = data
    # Create the compiled loss/metric variables with one eager pass on one example
    # (what Trainer._build_compiled_state does).
    first = jax.tree_util.tree_map(lambda array: array[:1], (x, y, sample_weight))
    y_pred = model(first[0], training=False)
    model.compute_loss(x=first[0], y=first[1], y_pred=y_pred, sample_weight=first[2], training=False)
    model.compute_metrics(first[0], first[1], y_pred, first[2])
    model.reset_metrics()
    metrics_variables = list(model.metrics_variables)

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, x, y, sample_weight):
        trainable, non_trainable, optimizer_state, metrics_state = state
        grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
        (_, aux), grads = grad_fn(trainable, non_trainable, metrics_state, x, y, sample_weight, training=True,
                                  optimizer_variables=optimizer_state)
        loss, y_pred, non_trainable, metrics_state = aux
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype("float32"))) for g in grads))
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        with keras.StatelessScope(state_mapping=list(zip(metrics_variables, metrics_state, strict=True))) as scope:
            model.compute_metrics(x, y, y_pred, sample_weight)
        metrics_state = [
            value if (value := scope.get_current_value(variable)) is not None else old
            for variable, old in zip(metrics_variables, metrics_state, strict=True)
        ]
        return (trainable, non_trainable, optimizer_state, metrics_state), loss, norm

    state = [(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
        [v.value for v in metrics_variables],
    )]

    compiled = []

    def step(sync):
        if not compiled:
            compiled.append(train_step.lower(state[0], x, y, sample_weight).compile())
            analysis = compiled[0].memory_analysis()
            if analysis is not None:
                info["xla_temp_bytes"] = int(analysis.temp_size_in_bytes)
        state[0], loss, norm = compiled[0](state[0], x, y, sample_weight)
        if not sync:
            return None
        float(norm)
        return float(loss)

    return step


def _keras_hub_model(spec, dropout):
    import keras_hub

    sizes = dict(vocabulary_size=spec.vocabulary_size, num_layers=spec.num_layers, num_heads=spec.num_heads,
                 hidden_dim=spec.hidden_dim, intermediate_dim=spec.intermediate_dim, dropout=dropout,
                 max_sequence_length=spec.max_sequence_length)
    if spec.family == "gpt":
        return keras_hub.models.GPT2CausalLM(backbone=keras_hub.models.GPT2Backbone(**sizes), preprocessor=None)
    return keras_hub.models.BertMaskedLM(backbone=keras_hub.models.BertBackbone(**sizes), preprocessor=None)


def _keras_hub_data(spec, batch):
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
    data = _keras_hub_data(spec, batch)
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
