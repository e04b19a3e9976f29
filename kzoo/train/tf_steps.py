"""The compiled train and eval steps of the TensorFlow backend, under a `tf.distribute.Strategy`.

One step consumes one global batch:
  1. every replica runs the forward pass and its share of the loss (Keras scales it
     by 1 / replicas), and takes gradients of the (loss-scaled) loss;
  2. gradients are summed across replicas (`all_reduce`), giving the global gradient;
  3. its norm is measured (unscaled), then the optimizer clips it globally, applies
     weight decay, and updates (or, under mixed_float16, skips the update and lowers
     the loss scale when it is not finite).

Several steps run in one call as a graph loop (`tf.range`), so one trace serves every call
length. The JAX twin is `kzoo.train.jax_steps`; `kzoo.train.loop.Trainer` drives either.
"""

import keras
import tensorflow as tf

from kzoo.train.batches import example_count, token_count


class TensorFlowSteps:
    """Train and eval functions of `model` (compiled with the kzoo optimizer) under `strategy`."""

    # Errors of a collective op: the Trainer asks `strategy.lost_peer` whether a peer worker died.
    collective_errors = (tf.errors.OpError,)

    def __init__(self, model, config, strategy):
        self.model = model
        self.config = config
        self.strategy = strategy
        self.optimizer = model.optimizer
        self._train_function = None
        self._eval_function = None

    def _replica_train_step(self, data):
        model, optimizer = self.model, self.optimizer
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled_loss = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # Variables the loss does not reach (BERT's pooler under a tagging or span head) have no gradient;
        # all_reduce cannot take None (MirroredStrategy fails), so leave them out of the step.
        used = [pair for pair in zip(gradients, variables, strict=True) if pair[0] is not None]
        gradients, variables = [pair[0] for pair in used], [pair[1] for pair in used]
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        scale = getattr(optimizer, "dynamic_scale", None)
        norm = tf.linalg.global_norm(gradients)
        if scale is not None:
            norm = norm / tf.cast(scale, norm.dtype)
        optimizer.apply(gradients, variables)
        model.compute_metrics(x, y, y_pred, sample_weight)
        statistics = {"loss": tf.cast(loss, tf.float32) * replicas, "tokens": token_count(x),
                      "examples": example_count(x)}
        return statistics, norm

    def _replica_eval_step(self, data):
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight)
        return tf.cast(loss, tf.float32) * self.strategy.num_replicas_in_sync

    def _make_train_function(self):
        """`train_function(iterator, num_steps)`: `num_steps` (a Python int) steps in one call, returning
        per-step float32 vectors of length `num_steps`. A single step skips the graph loop (its
        TensorArrays cost ~3% of a tiny model's CPU step)."""
        replica_step = tf.function(self._replica_train_step, jit_compile=self.config.xla, reduce_retracing=True)
        strategy, optimizer = self.strategy, self.optimizer
        inner_optimizer = getattr(optimizer, "inner_optimizer", optimizer)

        def step(iterator):
            learning_rate = tf.cast(inner_optimizer.learning_rate, tf.float32)  # before the update
            statistics, norm = strategy.run(replica_step, args=(next(iterator),))
            replicas = strategy.num_replicas_in_sync
            return (
                strategy.reduce("SUM", statistics["loss"], axis=None) / replicas,
                strategy.experimental_local_results(norm)[0],  # identical on every replica
                strategy.reduce("SUM", statistics["tokens"], axis=None),
                strategy.reduce("SUM", statistics["examples"], axis=None),
                learning_rate,
            )

        @tf.function
        def one_step(iterator):
            return tuple(value[None] for value in step(iterator))

        @tf.function
        def several_steps(iterator, num_steps):
            records = [tf.TensorArray(tf.float32, size=num_steps) for _ in range(5)]
            for index in tf.range(num_steps):
                records = [record.write(index, value) for record, value in zip(records, step(iterator), strict=True)]
            return tuple(record.stack() for record in records)

        def train_function(iterator, num_steps):
            if num_steps == 1:
                return one_step(iterator)
            return several_steps(iterator, tf.constant(num_steps, tf.int32))

        return train_function

    # --- what the Trainer calls -------------------------------------------------------------------

    def train_batches(self, dataset, start_step):
        """The endless stream of global batches from `start_step` on: skipping replays the deterministic stream,
        so the data position is the step."""
        return iter(self.strategy.experimental_distribute_dataset(dataset.repeat().skip(start_step)))

    def train(self, batches, count):
        """Runs `count` steps on the next batches of `batches`; returns numpy float32 vectors of length `count`:
        `(loss, gradient norm, tokens, examples, learning rate used)`. Reading them is the call's one host sync."""
        if self._train_function is None:
            self._train_function = self._make_train_function()
        return tuple(record.numpy() for record in self._train_function(batches, count))

    def evaluate(self, dataset, max_batches=0):
        """The held-out loss of each batch of `dataset` (the first `max_batches`, 0: all); the model's compiled
        metrics accumulate over them."""
        if self._eval_function is None:
            replica_step = tf.function(self._replica_eval_step, jit_compile=self.config.xla, reduce_retracing=True)
            strategy = self.strategy

            @tf.function
            def eval_function(batch):
                loss = strategy.run(replica_step, args=(batch,))
                return strategy.reduce("SUM", loss, axis=None) / strategy.num_replicas_in_sync

            self._eval_function = eval_function
        losses = []
        for index, batch in enumerate(self.strategy.experimental_distribute_dataset(dataset)):
            if max_batches and index >= max_batches:
                break
            losses.append(float(self._eval_function(batch)))
        return losses

    def start_profile(self, logdir):
        tf.profiler.experimental.start(logdir)

    def stop_profile(self):
        tf.profiler.experimental.stop()
