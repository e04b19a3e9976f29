"""Shared checks for kzoo layers and models: config and `.keras` round trips,
mixed precision, XLA/jit compilation and a training step.

Each test file calls these so that it only states what is special about its layer.
"""

import contextlib

import keras
import numpy as np
from keras import ops

# fp32 tolerances (STYLE.md): round trips are exact up to 1e-6, formulas vs NumPy 1e-5.
ROUND_TRIP_ATOL = 1e-6
REFERENCE_ATOL = 1e-5


def to_numpy(x):
    return ops.convert_to_numpy(x)


def weight(layer, name):
    """The value of the weight of `layer` whose path ends with `name`."""
    matches = [w for w in layer.weights if w.path.endswith(name)]
    assert len(matches) == 1, f"{name!r} matches {[w.path for w in layer.weights]}"
    return to_numpy(matches[0]).astype(np.float64)


def randomize_weights(layer, seed=0, scale=0.5):
    """Replaces every weight by uniform noise so zero-initialized biases are exercised."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.uniform(-scale, scale, variable.shape).astype(variable.dtype))


def assert_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def assert_keras_file_round_trip(model, inputs, tmp_path, atol=ROUND_TRIP_ATOL):
    """Saves `model` to `.keras`, reloads it in safe mode and compares outputs."""
    path = str(tmp_path / "model.keras")
    expected = model(inputs)
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    actual = restored(inputs)
    for want, got in zip(_flatten(expected), _flatten(actual), strict=True):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=atol, rtol=0)
    return restored


@contextlib.contextmanager
def tensorflow_functions_run_eagerly():
    """Runs `tf.function`s eagerly inside the block under TensorFlow (a no-op under other backends).

    For tests that call `kzoo.generate` once per model: tracing its compiled loop costs about 11 s per tiny model
    under TensorFlow, running the same keras.ops eagerly about 3.5 s; the compiled loop keeps its own tests."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def assert_mixed_precision_finite(build_model, inputs, policy="mixed_bfloat16"):
    """Builds a model under `policy` and checks outputs are finite (and fp32 weights)."""
    with dtype_policy(policy):
        model = build_model()
        outputs = model(inputs)
    for output in _flatten(outputs):
        assert np.all(np.isfinite(to_numpy(ops.cast(output, "float32"))))
    assert all(w.dtype == "float32" for w in model.weights if "float" in str(w.dtype))
    return outputs


def assert_jit_matches_eager(model, inputs, atol=1e-5):
    """Runs `model` through `predict` compiled with XLA (TF) / jax.jit (JAX)."""
    model.compile(jit_compile=True)
    compiled = model.predict(inputs, verbose=0, batch_size=_batch_size(inputs))
    eager = model(inputs)
    for want, got in zip(_flatten(eager), _flatten(compiled), strict=True):
        np.testing.assert_allclose(np.asarray(got), to_numpy(want), atol=atol, rtol=1e-5)


def fit_one_step(model, inputs, targets, jit_compile="auto"):
    """One `fit` step with MSE on every output; returns the finite loss."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit_compile)
    history = model.fit(inputs, targets, epochs=1, batch_size=_batch_size(inputs), verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss)
    return loss


def _batch_size(inputs):
    first = inputs[0] if isinstance(inputs, (list, tuple)) else (
        next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    )
    return int(first.shape[0])


def _flatten(outputs):
    if isinstance(outputs, dict):
        return [outputs[key] for key in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [leaf for item in outputs for leaf in _flatten(item)]
    return [outputs]
