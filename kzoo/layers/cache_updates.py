"""Writing new entries into a fixed-size buffer along its time axis (KV caches, token buffers).

`write_at(buffer, index, update)` places `update` `(b, s, ...)` into `buffer` `(b, t, ...)` at time positions
`index .. index + s - 1` (`axis=` names another time axis, e.g. 2 for a `(b, 2, t, h, k)` KV cache). By default
it is `keras.ops.slice_update`: an in-place dynamic-update-slice under XLA (`jax.jit`,
`tf.function(jit_compile=True)`), the fastest form.

Under TensorFlow that op is `XlaDynamicUpdateSlice`, which exists only where TensorFlow's XLA kernels are linked:
a TF Serving binary started without XLA cannot run it and tf2onnx cannot convert it. Inside
`with portable_updates():` the same write is traced from standard ops instead (a gather of `update` over the
buffer's positions and a select; for one position, which is every decoding step, the select alone with `update`
broadcast over the time axis), so a graph traced there (a SavedModel's decoding loop) needs nothing but core
TensorFlow kernels. It reads the whole buffer once per write: the same order of work as attending over it.
"""

import contextlib
import threading

from keras import ops

_state = threading.local()


@contextlib.contextmanager
def portable_updates():
    """Within this block (in this thread), `write_at` traces with standard ops only."""
    previous = getattr(_state, "portable", False)
    _state.portable = True
    try:
        yield
    finally:
        _state.portable = previous


def portable():
    """True inside `portable_updates()`."""
    return getattr(_state, "portable", False)


def write_at(buffer, index, update, axis=1):
    """`buffer` with `update` written at time positions `index ..` along `axis`.

    Args:
        buffer: `(b, t, ...)` tensor (`(b, ..., t, ...)` with `t` at `axis`).
        index: int or int32 scalar tensor, the first time position written; `index + s <= t`.
        update: `(b, s, ...)` tensor of the buffer's dtype and other dimensions, `s` at `axis`.
        axis: int >= 1, the time axis.

    Returns:
        The updated tensor, shaped as `buffer`.
    """
    index = ops.cast(index, "int32")
    update = ops.cast(update, buffer.dtype)
    rank = len(buffer.shape)
    if not portable():
        zero = ops.zeros((), "int32")
        return ops.slice_update(buffer, (zero,) * axis + (index,) + (zero,) * (rank - axis - 1), update)
    length = ops.shape(buffer)[axis]
    where_shape = (1,) * axis + (-1,) + (1,) * (rank - axis - 1)  # a (t,) mask broadcast over the other axes
    if update.shape[axis] == 1:  # one position (a decoding step): select it, `update` broadcast along `axis`
        hit = ops.reshape(ops.arange(length, dtype="int32") == index, where_shape)
        return ops.where(hit, update, buffer)
    written = ops.shape(update)[axis]
    offsets = ops.arange(length, dtype="int32") - index  # (t,): position of each buffer slot within `update`
    inside = ops.logical_and(offsets >= 0, offsets < written)
    gathered = ops.take(update, ops.clip(offsets, 0, written - 1), axis=axis)  # shaped as `buffer`
    return ops.where(ops.reshape(inside, where_shape), gathered, buffer)
