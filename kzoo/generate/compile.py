"""Compiling the decoding function, and caching it per (model, shapes, options).

TensorFlow: a `tf.function` (with XLA when `jit_compile=True`); the model's
variables are captured by reference, so later weight updates are seen.
JAX: `jax.jit` of a stateless function that takes the variables' values as
arguments (inside a `keras.StatelessScope`), so weights are inputs of the compiled
program rather than constants baked into it.

Compiled functions are kept on the model itself (in an attribute Keras neither
tracks nor saves), under a key of the input shapes and the `GenerationOptions`: a
repeated call with the same shapes and options reuses its function without
retracing, and the functions are freed with the model. `trace_count(model)` says
how many times functions of `model` were traced (tests use it).
"""

import weakref

import keras
import numpy as np

# Double leading underscore: Keras' saving walks a model's attributes but skips these.
_ATTRIBUTE = "__kzoo_generate_functions"


def _store(model):
    store = model.__dict__.get(_ATTRIBUTE)
    if store is None:
        store = {"functions": {}, "traces": 0}
        object.__setattr__(model, _ATTRIBUTE, store)  # bypasses Keras' attribute tracking
    return store


def trace_count(model):
    """How many times decoding functions of `model` have been traced."""
    return _store(model)["traces"]


def clear(model):
    """Forgets the compiled decoding functions of `model`."""
    _store(model)["functions"].clear()


def _counted(model, decode):
    reference = weakref.ref(model)

    def traced(arrays, seed):
        owner = reference()
        if owner is not None:
            _store(owner)["traces"] += 1
        return decode(arrays, seed)

    return traced


def _tensorflow(model, decode, jit_compile):
    import tensorflow as tf

    function = tf.function(_counted(model, decode), jit_compile=bool(jit_compile), reduce_retracing=False)

    def run(arrays, seed):
        arrays = {name: tf.convert_to_tensor(value) for name, value in arrays.items()}
        return function(arrays, tf.convert_to_tensor(seed))

    return run


def _jax(model, decode):
    import jax

    reference = weakref.ref(model)
    traced = _counted(model, decode)

    def stateless(values, arrays, seed):
        # All variables in one list whose order does not depend on `trainable` flags.
        mapping = list(zip(reference().variables, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            return traced(arrays, seed)

    function = jax.jit(stateless)

    def run(arrays, seed):
        return function([variable.value for variable in reference().variables], arrays, seed)

    return run


def compiled(model, key, build):
    """The compiled decoding function of `model` under `key`, built by `build()` once.

    Args:
        model: the Keras model (cache owner).
        key: hashable; the shapes and `GenerationOptions` of the call.
        build: zero-argument callable returning `(decode, jit_compile)`.

    Returns:
        `run(arrays, seed)`: dict of NumPy arrays and an int32 `(2,)` seed -> dict of
        backend tensors.
    """
    functions = _store(model)["functions"]
    if key not in functions:
        decode, jit_compile = build()
        backend = keras.backend.backend()
        if backend == "tensorflow":
            functions[key] = _tensorflow(model, decode, jit_compile)
        elif backend == "jax":
            functions[key] = _jax(model, decode)
        else:
            raise ValueError(
                f"generate runs under the tensorflow and jax Keras backends, not {backend!r}; set "
                "KERAS_BACKEND=tensorflow or jax."
            )
    return functions[key]


def to_numpy(outputs):
    return {name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in outputs.items()}
