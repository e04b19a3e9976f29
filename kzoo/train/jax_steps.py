"""The compiled train and eval steps of the JAX backend: stateless, jitted, several steps per call.

The model's state (trainable, non-trainable, optimizer and metric variable values) goes
into a jitted function and comes back updated; the call donates it, so the device holds
one copy. One step is the TensorFlow step's twin (`kzoo.train.tf_steps`):
  1. the forward pass and the (loss-scaled) loss through `Model.compute_loss_and_updates`,
     and `jax.value_and_grad` of it with respect to the trainable variables;
  2. the global gradient's norm (unscaled), measured before the update;
  3. `optimizer.stateless_apply`: global-norm clipping, AdamW, gradient accumulation and,
     under mixed_float16, the loss-scale optimizer's skip of a non-finite update.
Variables the loss does not reach (BERT's pooler under a tagging head) are left as they
were, as the TensorFlow step leaves them out: weight decay must not shrink them.

Distribution is Keras' (`keras.distribution`): the variables carry their layouts, the
global batch is split over the mesh's batch axis, and XLA inserts the gradient sum, so a
step on N devices computes the update of one device on the same global batch. Every
process of a multi-host job reads the same global batches and places its devices' slices.

Several steps run as one `lax.fori_loop` over a stack of batches, so the device runs them
back to back and the host reads every step's loss, norm and counts at once. The stack
always holds `max_steps_per_call` batches (padded by repeating the last), so every call
length uses one compiled function.
"""

import jax
import jax.extend.core
import jax.numpy as jnp
import keras
import numpy as np

from kzoo.train.batches import example_count, token_count


def to_host(value):
    """A numpy copy of a `jax.Array`, also when it spans devices of other processes (replicated state of a
    multi-host job: this process's copy; a sharded one is gathered from every process, which all must call)."""
    if not isinstance(value, jax.Array) or value.is_fully_addressable:
        return np.asarray(value)
    if value.is_fully_replicated:
        return np.asarray(value.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def loss_inputs(function, values):
    """Indices of `values` (a list of arrays) that the scalar `function(values)` depends on, read from its jaxpr.

    An equation counts when one of its outputs is needed; then all its inputs are (a nested jaxpr is taken
    whole), so the answer errs towards "used", never the other way."""
    closed = jax.make_jaxpr(function)(values)
    jaxpr = closed.jaxpr
    needed = {var for var in jaxpr.outvars if isinstance(var, jax.extend.core.Var)}
    for equation in reversed(jaxpr.eqns):
        if any(var in needed for var in equation.outvars):
            needed.update(var for var in equation.invars if isinstance(var, jax.extend.core.Var))
    return [index for index, var in enumerate(jaxpr.invars) if var in needed]


class JaxSteps:
    """Train and eval functions of `model` (compiled with the kzoo optimizer) under a `JaxDistribution`.

    Args:
        model: a compiled Keras model built in `distribution.scope()`.
        config: the `TrainConfig`.
        distribution: the `kzoo.train.jax_distribution.JaxDistribution`.
    """

    collective_errors = ()  # JAX reports a lost peer by ending the process; nothing to translate

    def __init__(self, model, config, distribution):
        self.model = model
        self.config = config
        self.distribution = distribution
        self.optimizer = model.optimizer
        self.max_steps_per_call = config.max_steps_per_call()  # the Trainer's call boundaries
        self._train_function = None
        self._eval_function = None
        self._used = None
        self.train_traces = 0  # how often the train function was traced (compiled): once per batch shape

    # --- the state, in and out of the compiled functions ------------------------------------------

    def _variable_groups(self):
        model = self.model
        return (model.trainable_variables, model.non_trainable_variables, self.optimizer.variables,
                model.metrics_variables)

    def _state(self):
        """The variables' values. On one device each is put on it explicitly: Keras creates and resets values
        (the metrics', after every log) without committing them to a device while the step's outputs are
        committed, and that difference alone would compile the step again."""
        state = tuple([variable.value for variable in group] for group in self._variable_groups())
        if self.distribution.distribution is None:
            state = jax.device_put(state, self.distribution.devices[0])
        return state

    def _assign(self, state):
        for group, values in zip(self._variable_groups(), state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)

    def _state_shardings(self):
        if self.distribution.distribution is None:
            return None
        return tuple([variable.value.sharding for variable in group] for group in self._variable_groups())

    # --- one step --------------------------------------------------------------------------------

    def _metrics_after(self, metric_values, x, y, y_pred, sample_weight):
        model = self.model
        with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metric_values))) as scope:
            model.compute_metrics(x, y, y_pred, sample_weight)
        return [value if (new := scope.get_current_value(variable)) is None else new
                for variable, value in zip(model.metrics_variables, metric_values)]

    def _learning_rate(self, optimizer_values):
        """The learning rate this step uses (the schedule at the optimizer's current iteration)."""
        optimizer = self.optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
            return jnp.asarray(inner.learning_rate, jnp.float32)

    def _loss_scale(self, optimizer_values):
        scale = getattr(self.optimizer, "dynamic_scale", None)
        if scale is None:
            return None
        index = next(i for i, variable in enumerate(self.optimizer.variables) if variable is scale)
        return optimizer_values[index]

    def _training_loss(self, trainable, state, batch):
        """`(scaled loss, (loss, y_pred, non-trainable values, metric values))` of `batch` with the trainable
        variables set to `trainable` and the rest of the model and optimizer to `state`'s values."""
        _, non_trainable, optimizer_values, metric_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        return self.model.compute_loss_and_updates(trainable, non_trainable, metric_values, x, y, sample_weight,
                                                   training=True, optimizer_variables=optimizer_values)

    def _step(self, state, batch):
        """One training step, traced inside the jitted function: `(state, batch) -> (new state, statistics)`, the
        statistics being float32 scalars `(loss, gradient norm, tokens, examples, learning rate used)`."""
        optimizer = self.optimizer
        trainable, non_trainable, optimizer_values, metric_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        used = self._used

        def scaled_loss(used_values):
            values = list(trainable)
            for index, value in zip(used, used_values, strict=True):
                values[index] = value
            return self._training_loss(values, state, batch)

        (_, (loss, y_pred, non_trainable, metric_values)), gradients = jax.value_and_grad(
            scaled_loss, has_aux=True)([trainable[index] for index in used])
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(gradient.astype(jnp.float32))) for gradient in gradients))
        scale = self._loss_scale(optimizer_values)
        if scale is not None:
            norm = norm / scale.astype(jnp.float32)
        learning_rate = self._learning_rate(optimizer_values)
        full_gradients = [jnp.zeros_like(value) for value in trainable]
        for index, gradient in zip(used, gradients, strict=True):
            full_gradients[index] = gradient
        updated, optimizer_values = optimizer.stateless_apply(optimizer_values, full_gradients, trainable)
        trainable = list(trainable)
        for index in used:
            trainable[index] = updated[index]
        metric_values = self._metrics_after(metric_values, x, y, y_pred, sample_weight)
        statistics = (jnp.asarray(loss, jnp.float32), norm, token_count(x), example_count(x), learning_rate)
        return (trainable, non_trainable, optimizer_values, metric_values), statistics

    def _find_used_variables(self, batch):
        """Which trainable variables the training loss reaches (traced once per run, on the first batch)."""
        state = self._state()
        return loss_inputs(lambda values: self._training_loss(values, state, batch)[0], state[0])

    def _make_train_function(self):
        """The jitted `(state, stacked batches, count) -> (state, records)`; a run whose calls all hold one step
        gets the step without the loop around it (the loop costs a tiny model ~15% of a CPU step)."""
        shardings = self._state_shardings()
        out_shardings = None if shardings is None else (shardings, None)
        if self.max_steps_per_call == 1:
            def one_step(state, stacked, count):
                self.train_traces += 1  # runs while tracing only
                state, statistics = self._step(state, jax.tree.map(lambda array: array[0], stacked))
                return state, [value[None] for value in statistics]

            return jax.jit(one_step, donate_argnums=0, out_shardings=out_shardings)

        def several_steps(state, stacked, count):
            self.train_traces += 1  # runs while tracing only

            def body(index, carry):
                state, records = carry
                batch = jax.tree.map(lambda array: jax.lax.dynamic_index_in_dim(array, index, keepdims=False),
                                     stacked)
                state, statistics = self._step(state, batch)
                records = [record.at[index].set(value) for record, value in zip(records, statistics, strict=True)]
                return state, records

            records = [jnp.zeros((self.max_steps_per_call,), jnp.float32) for _ in range(5)]
            return jax.lax.fori_loop(0, count, body, (state, records))

        return jax.jit(several_steps, donate_argnums=0, out_shardings=out_shardings)

    # --- data ------------------------------------------------------------------------------------

    def _place(self, array, stacked):
        """`array` (numpy, the global batch or a stack of them) on the run's devices: split along the batch axis
        when it divides over the mesh's batch axis, else whole on every device (same result, slower step)."""
        distribution = self.distribution.distribution
        if distribution is None:
            return jax.device_put(array, self.distribution.devices[0])
        mesh = distribution.device_mesh.backend_mesh
        batch_axis = 1 if stacked else 0
        spec = [None] * array.ndim
        if array.ndim > batch_axis and array.shape[batch_axis] % self.distribution.num_replicas_in_sync == 0:
            spec[batch_axis] = distribution.batch_dim_name
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    def train_batches(self, dataset, start_step):
        """The endless stream of global batches (numpy) from `start_step` on: skipping replays the deterministic
        stream, so the data position is the step."""
        return dataset.repeat().skip(start_step).as_numpy_iterator()

    def _stacks(self, batches, count):
        """The next `count` batches as stacks of equal-shaped consecutive batches, each padded to
        `max_steps_per_call`: yields `(stack, steps in it)`."""
        group = []
        for _ in range(count):
            batch = next(batches)
            if group and _shapes(batch) != _shapes(group[0]):
                yield _stack(group, self.max_steps_per_call), len(group)
                group = []
            group.append(batch)
        yield _stack(group, self.max_steps_per_call), len(group)

    # --- what the Trainer calls -------------------------------------------------------------------

    def train(self, batches, count):
        """Runs `count` steps on the next batches of `batches`; returns numpy float32 vectors of length `count`:
        `(loss, gradient norm, tokens, examples, learning rate used)`. Reading them is the call's one host sync;
        the Keras variables hold the new state afterwards."""
        if count > self.max_steps_per_call:
            raise ValueError(f"{count} steps in one call; this run's calls hold at most {self.max_steps_per_call}")
        pieces = []
        for stack, steps in self._stacks(batches, count):
            if self._used is None:
                self._used = self._find_used_variables(jax.tree.map(lambda array: array[0], stack))
            if self._train_function is None:
                self._train_function = self._make_train_function()
            placed = jax.tree.map(lambda array: self._place(array, stacked=True), stack)
            state, records = self._train_function(self._state(), placed, np.int32(steps))
            self._assign(state)
            pieces.append([to_host(record)[:steps] for record in records])
        return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))

    def memory_analysis(self, batch):
        """XLA's memory analysis of the train function compiled for batches shaped like `batch` (a numpy global
        batch): `temp_size_in_bytes` is the scratch memory a call plans (activations kept for the backward pass,
        temporaries), beside the state; None where the platform reports none. Compiles as the first call would."""
        if self._used is None:
            self._used = self._find_used_variables(batch)
        if self._train_function is None:
            self._train_function = self._make_train_function()
        stack = jax.tree.map(lambda array: self._place(array, stacked=True), _stack([batch], self.max_steps_per_call))
        return self._train_function.lower(self._state(), stack, np.int32(1)).compile().memory_analysis()

    def evaluate(self, dataset, max_batches=0):
        """The held-out loss of each batch of `dataset` (the first `max_batches`, 0: all); the model's compiled
        metrics accumulate over them."""
        model = self.model
        if self._eval_function is None:
            def eval_step(trainable, non_trainable, metric_values, batch):
                x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
                _, (loss, y_pred, _, metric_values) = model.compute_loss_and_updates(
                    trainable, non_trainable, metric_values, x, y, sample_weight, training=False)
                return jnp.asarray(loss, jnp.float32), self._metrics_after(metric_values, x, y, y_pred, sample_weight)

            self._eval_function = jax.jit(eval_step)
        trainable, non_trainable, _, metric_values = self._state()
        losses = []
        for index, batch in enumerate(dataset.as_numpy_iterator()):
            if max_batches and index >= max_batches:
                break
            placed = jax.tree.map(lambda array: self._place(array, stacked=False), batch)
            loss, metric_values = self._eval_function(trainable, non_trainable, metric_values, placed)
            losses.append(float(to_host(loss)))
        for variable, value in zip(model.metrics_variables, metric_values, strict=True):
            variable.assign(value)
        return losses

    def start_profile(self, logdir):
        jax.profiler.start_trace(logdir)

    def stop_profile(self):
        jax.profiler.stop_trace()


def _shapes(batch):
    return [np.shape(array) for array in jax.tree.leaves(batch)]


def _stack(batches, length):
    """`(length, ...)` stacks of the arrays of `batches`, the last batch repeated to fill `length` steps."""
    padded = list(batches) + [batches[-1]] * (length - len(batches))
    return jax.tree.map(lambda *arrays: np.stack(arrays), *padded)
