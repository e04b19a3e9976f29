"""Writing new entries into a fixed-size buffer along its time axis (KV caches, token buffers).

`write_at(buffer, index, update)` places `update` `(b, s, ...)` into `buffer` `(b, t, ...)` at time positions
`index .. index + s - 1`. By default it is `keras.ops.slice_update`: an in-place dynamic-update-slice under XLA
(`jax.jit`, `tf.function(jit_compile=True)`), the fastest form.

Under TensorFlow that op is `XlaDynamicUpdateSlice`, which exists only where TensorFlow's XLA kernels are linked:
a TF Serving binary started without XLA cannot run it and tf2onnx cannot convert it. Inside
`with portable_updates():` the same write is traced from standard ops instead (a gather of `update` over the
buffer's positions and a select), so a graph traced there (a SavedModel's decoding loop) needs nothing but core
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


def write_at(buffer, index, update):
    """`buffer` with `update` written at time positions `index ..`.

    Args:
        buffer: `(b, t, ...)` tensor.
        index: int or int32 scalar tensor, the first time position written; `index + s <= t`.
        update: `(b, s, ...)` tensor of the buffer's dtype and trailing shape.

    Returns:
        The updated `(b, t, ...)` tensor.
    """
    index = ops.cast(index, "int32")
    update = ops.cast(update, buffer.dtype)
    if not portable():
        zero = ops.zeros((), "int32")
        return ops.slice_update(buffer, (zero, index) + (zero,) * (len(buffer.shape) - 2), update)
    length, written = ops.shape(buffer)[1], ops.shape(update)[1]
    offsets = ops.arange(length, dtype="int32") - index  # (t,): position of each buffer slot within `update`
    inside = ops.logical_and(offsets >= 0, offsets < written)
    gathered = ops.take(update, ops.clip(offsets, 0, written - 1), axis=1)  # (b, t, ...)
    inside = ops.reshape(inside, (1, -1) + (1,) * (len(buffer.shape) - 2))
    return ops.where(inside, gathered, buffer)
