"""Input validation shared by kzoo layers.

Errors are raised where user input enters a layer, with a message that names the
argument and says what to fix. Shape checks run on static shapes (always known under
JAX, and in TensorFlow eager mode); where TensorFlow traces a graph with an unknown
dimension, the check becomes a graph assertion carrying the same message, so that an
out-of-range position never turns into a silent gather of zeros on a GPU.
"""

import keras
from keras import ops


def check_rank(name, tensor, ranks, layer):
    """Raises ValueError unless `tensor` has one of the `ranks` (an int or a tuple)."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    rank = len(tensor.shape)
    if rank not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"{layer.__class__.__name__} '{layer.name}': `{name}` must have rank "
            f"{expected}, got rank {rank} with shape {tuple(tensor.shape)}."
        )


def check_last_dim(name, tensor, expected, layer, hint=""):
    """Raises ValueError when the static last dimension of `tensor` differs from `expected`."""
    actual = tensor.shape[-1]
    if actual is not None and expected is not None and int(actual) != int(expected):
        raise ValueError(
            f"{layer.__class__.__name__} '{layer.name}': `{name}` has last dimension "
            f"{actual}, but the layer expects {expected} (shape {tuple(tensor.shape)})."
            + (f" {hint}" if hint else "")
        )


def check_divisible(numerator_name, numerator, denominator_name, denominator, layer_name):
    if numerator % denominator:
        raise ValueError(
            f"{layer_name}: `{numerator_name}`={numerator} is not divisible by "
            f"`{denominator_name}`={denominator}; choose `{denominator_name}` among "
            f"{[d for d in range(1, numerator + 1) if numerator % d == 0]}."
        )


def check_positive_int(name, value, layer_name, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{layer_name}: `{name}` must be a positive integer, got {value!r}.")


def check_choice(name, value, choices, layer_name):
    if value not in choices:
        raise ValueError(
            f"{layer_name}: unknown `{name}`={value!r}; valid values are {sorted(choices)}."
        )


def check_rate(name, value, layer_name):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{layer_name}: `{name}` must be in [0, 1), got {value!r}.")


def check_sequence_fits(sequence_length, start_index, max_sequence_length, layer, what):
    """Checks `start_index + sequence_length <= max_sequence_length`; returns `start_index`.

    `sequence_length` and `start_index` may be Python ints or scalar tensors. Static
    values give a ValueError now. A dynamic value under the TensorFlow backend gets a
    graph assertion with the same message, and the returned `start_index` depends on
    it, so nothing that uses it can run before the check (JAX shapes are static).
    """
    if max_sequence_length is None:
        return start_index
    message = (
        f"{layer.__class__.__name__} '{layer.name}': {what} of length "
        f"{{length}} exceeds `max_sequence_length`={max_sequence_length}. Truncate the input to at most "
        f"{max_sequence_length} tokens or build the model with a larger `max_sequence_length`."
    )
    static_length = _static_int(sequence_length)
    static_start = _static_int(start_index)
    if static_length is not None and static_start is not None:
        if static_start + static_length > max_sequence_length:
            raise ValueError(message.format(length=static_start + static_length))
        return start_index
    if keras.backend.backend() != "tensorflow":
        return start_index
    import tensorflow as tf

    end = tf.cast(start_index, "int32") + tf.cast(sequence_length, "int32")
    assertion = tf.debugging.assert_less_equal(end, max_sequence_length, message=message.format(length="(dynamic)"))
    with tf.control_dependencies([assertion]):
        return tf.identity(tf.cast(start_index, "int32"))


def check_ids_in_range(name, ids, limit, layer):
    """Checks integer `ids` lie in [0, limit) where the values can be seen; returns `ids`.

    Concrete (eager) tensors are checked on the host and raise ValueError. A TensorFlow
    graph gets an assertion op that the returned `ids` depend on. Values traced under
    `jax.jit` cannot be inspected; there the gather clamps, as the docs state.
    """
    message = (
        f"{layer.__class__.__name__} '{layer.name}': `{name}` must lie in "
        f"[0, {limit}) (the vocabulary/table size); got values outside it. Check the "
        "tokenizer matches the model's `vocabulary_size`."
    )
    if isinstance(ids, keras.KerasTensor):
        return ids
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly():
            _raise_if_out_of_range(ops.convert_to_numpy(ids), limit, message)
            return ids
        assertions = [
            tf.debugging.assert_non_negative(ids, message=message),
            tf.debugging.assert_less(ids, tf.cast(limit, ids.dtype), message=message),
        ]
        with tf.control_dependencies(assertions):
            return tf.identity(ids)
    if backend == "jax":
        import jax

        if not isinstance(ids, jax.core.Tracer):
            _raise_if_out_of_range(ops.convert_to_numpy(ids), limit, message)
    return ids


def _raise_if_out_of_range(values, limit, message):
    if values.size and (values.min() < 0 or values.max() >= limit):
        raise ValueError(message + f" Found min={values.min()}, max={values.max()}.")


def _static_int(value):
    if isinstance(value, int):
        return value
    try:
        import numpy as np

        if isinstance(value, (np.integer,)):
            return int(value)
    except ImportError:  # pragma: no cover
        pass
    return None
