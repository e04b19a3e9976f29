import numpy as np
import pytest
from keras import ops

from kzoo.layers import FeedForward, LayerNorm, RMSNorm
from tests import reference
from tests.harness import (
    REFERENCE_ATOL,
    assert_config_round_trip,
    dtype_policy,
    randomize_weights,
    to_numpy,
    weight,
)


@pytest.mark.parametrize(
    "activation, gated",
    [("relu", False), ("gelu", False), ("gelu_tanh", False), ("gelu", True), ("silu", True), ("gelu_tanh", True)],
    ids=["relu", "gelu", "gelu_tanh", "geglu", "swiglu", "t5_gated_gelu"],
)
def test_feed_forward_matches_formula(rng, activation, gated):
    layer = FeedForward(intermediate_dim=10, activation=activation, gated=gated)
    x = rng.normal(size=(2, 3, 6)).astype("float32")
    layer(x)
    randomize_weights(layer)
    out = to_numpy(layer(x))
    gate = (weight(layer, "gate/kernel"), weight(layer, "gate/bias")) if gated else (None, None)
    want = reference.feed_forward(
        x.astype(np.float64), activation,
        weight(layer, "up/kernel"), weight(layer, "up/bias"),
        weight(layer, "down/kernel"), weight(layer, "down/bias"), *gate,
    )
    np.testing.assert_allclose(out, want, atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


def test_feed_forward_without_bias_and_other_output_width(rng):
    layer = FeedForward(intermediate_dim=4, activation="relu", use_bias=False, output_dim=3)
    assert layer(rng.normal(size=(1, 2, 5)).astype("float32")).shape == (1, 2, 3)
    assert len(layer.weights) == 2


def test_unknown_activation_lists_valid_ones():
    valid = r"\['gelu', 'gelu_tanh', 'relu', 'silu'\]"
    with pytest.raises(ValueError, match=r"unknown `activation`='tanh'; valid values are " + valid):
        FeedForward(intermediate_dim=4, activation="tanh")


@pytest.mark.parametrize("epsilon", [1e-12, 1e-5, 0.5])
def test_layer_norm_matches_formula(rng, epsilon):
    layer = LayerNorm(epsilon=epsilon)
    x = (3 + 2 * rng.normal(size=(2, 4, 7))).astype("float32")
    layer(x)
    randomize_weights(layer)
    want = reference.layer_norm(x.astype(np.float64), weight(layer, "scale"), weight(layer, "bias"), epsilon)
    np.testing.assert_allclose(to_numpy(layer(x)), want, atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_rms_norm_matches_formula(rng, epsilon):
    layer = RMSNorm(epsilon=epsilon)
    x = (1 + rng.normal(size=(2, 4, 7))).astype("float32")
    layer(x)
    randomize_weights(layer)
    want = reference.rms_norm(x.astype(np.float64), weight(layer, "scale"), epsilon)
    np.testing.assert_allclose(to_numpy(layer(x)), want, atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


def test_norm_statistics_are_float32_under_bfloat16(rng):
    """A large offset would swamp bfloat16 statistics; float32 ones stay accurate."""
    x = (100 + 4 * rng.normal(size=(2, 3, 64))).astype("float32")
    with dtype_policy("mixed_bfloat16"):
        layer = LayerNorm(epsilon=1e-5)
        out = to_numpy(ops.cast(layer(x), "float32")).astype(np.float64)
    assert layer.compute_dtype == "bfloat16"
    # Keras casts the input to bfloat16 before the layer; the reference sees the same input.
    rounded = to_numpy(ops.cast(ops.cast(x, "bfloat16"), "float32")).astype(np.float64)
    want = reference.layer_norm(rounded, 1.0, 0.0, 1e-5)
    # Only the bfloat16 output rounding (~2^-8 relative) remains.
    np.testing.assert_allclose(out, want, atol=0.02)


def test_epsilon_must_be_positive():
    with pytest.raises(ValueError, match="`epsilon` must be > 0"):
        RMSNorm(epsilon=0)
