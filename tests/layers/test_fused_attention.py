"""The fused attention path (`ops.dot_product_attention`, JAX backend) against the explicit one.

Under JAX, `MultiHeadAttention` hands attention to one fused kernel whenever the caller
does not want the probabilities and no attention dropout is active (cuDNN flash
attention on GPUs, XLA's reference on CPU). These tests pin that the fused path is the
one taken, and that it computes what the explicit path computes: every mask kind, an
additive bias, a KV cache, rows with no visible key, bfloat16, and the gradients.
"""

import keras
import numpy as np
import pytest

from kzoo import models
from kzoo.layers import MultiHeadAttention, set_fused_attention
from kzoo.layers import attention as attention_module
from tests.harness import randomize_weights, to_numpy

pytestmark = pytest.mark.backend("jax", reason="the fused path is jax.nn.dot_product_attention; TensorFlow runs "
                                               "the explicit path that the attention tests cover")


@pytest.fixture(autouse=True)
def fused_attention_on_any_device():
    """The fused path on CPUs too (by default only on GPUs/TPUs); auto again afterwards."""
    previous = set_fused_attention("always")
    yield
    set_fused_attention(previous)
    keras.config.enable_flash_attention()


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts `_attend_fused` calls."""
    calls = []
    original = attention_module.MultiHeadAttention._attend_fused

    def spy(self, *args):
        calls.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(attention_module.MultiHeadAttention, "_attend_fused", spy)
    return calls


def _left_and_right_padding(b, t):
    padding = np.ones((b, t), "int32")
    padding[1, :3] = 0  # left padding: under a causal mask queries 0..2 see no key at all
    padding[2, t - 2:] = 0  # right padding
    return padding


CASES = {
    "no mask": {},
    "padding": {"padding": True},
    "causal": {"use_causal_mask": True},
    "padding+causal": {"padding": True, "use_causal_mask": True},
    "custom mask": {"attention_mask": True},
    "bias+padding": {"bias": True, "padding": True},
}


def _call_arguments(rng, case, b, s):
    arguments = {"use_causal_mask": case.get("use_causal_mask", False)}
    if case.get("padding"):
        arguments["padding_mask"] = _left_and_right_padding(b, s)
    if case.get("attention_mask"):
        arguments["attention_mask"] = rng.random((b, s, s)) < 0.6
    if case.get("bias"):
        arguments["attention_bias"] = rng.normal(size=(1, 4, s, s)).astype("float32")
    return arguments


@pytest.mark.parametrize("name", list(CASES))
def test_fused_self_attention_equals_the_explicit_path(rng, fused_calls, name):
    b, s, d = 3, 9, 16
    layer = MultiHeadAttention(num_heads=4, attention_scale=0.3)
    x = rng.normal(size=(b, s, d)).astype("float32")
    arguments = _call_arguments(rng, CASES[name], b, s)
    layer(x, **arguments)
    randomize_weights(layer)
    fused_calls.clear()
    fused = to_numpy(layer(x, **arguments))
    assert fused_calls == [layer.name]
    explicit, _ = layer(x, return_attention_scores=True, **arguments)
    assert fused_calls == [layer.name]  # asking for the scores takes the explicit path
    np.testing.assert_allclose(fused, to_numpy(explicit), atol=2e-6)


def test_a_query_with_no_visible_key_gets_a_zero_context(rng):
    layer = MultiHeadAttention(num_heads=2, use_bias=False)
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    padding = _left_and_right_padding(3, 6)
    out = to_numpy(layer(x, padding_mask=padding, use_causal_mask=True))
    np.testing.assert_array_equal(out[1, :3], 0.0)  # left padding: nothing at or before them is real
    assert np.all(np.abs(out[1, 3:]) > 0)


def test_fused_cross_attention_and_kv_cache_equal_the_explicit_path(rng, fused_calls):
    b, s, t, d = 2, 5, 7, 12
    cross = MultiHeadAttention(num_heads=3)
    query = rng.normal(size=(b, s, d)).astype("float32")
    memory = rng.normal(size=(b, t, d)).astype("float32")
    memory_padding = np.ones((b, t), "int32")
    memory_padding[1, 4:] = 0
    fused = cross(query, key_value=memory, padding_mask=memory_padding)
    assert fused_calls == [cross.name]
    explicit, _ = cross(query, key_value=memory, padding_mask=memory_padding, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), atol=2e-6)

    self_attention = MultiHeadAttention(num_heads=3)
    self_attention(query)
    cache = self_attention.empty_cache(b, 8)
    fused_calls.clear()
    fused, fused_cache = self_attention(query, cache=cache, cache_update_index=2, use_causal_mask=True)
    explicit, explicit_cache, _ = self_attention(
        query, cache=cache, cache_update_index=2, use_causal_mask=True, return_attention_scores=True
    )
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), atol=2e-6)
    np.testing.assert_array_equal(to_numpy(fused_cache), to_numpy(explicit_cache))
    assert fused_calls == [self_attention.name]


def test_attention_dropout_in_training_and_disabled_flash_attention_take_the_explicit_path(rng, fused_calls):
    x = rng.normal(size=(2, 4, 8)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, dropout=0.5)
    layer(x, training=True)
    assert fused_calls == []
    layer(x, training=False)
    assert fused_calls == [layer.name]  # inference: dropout is off, so the kernel serves
    keras.config.disable_flash_attention()
    layer(x, training=False)
    keras.config.enable_flash_attention()
    set_fused_attention("never")
    layer(x, training=False)
    assert fused_calls == [layer.name]


def test_by_default_only_an_accelerator_takes_the_fused_path(rng, fused_calls):
    """On CPUs the fused op would run XLA's reference at the same speed: auto keeps the explicit form."""
    import jax

    assert set_fused_attention("auto") == "always"
    layer = MultiHeadAttention(num_heads=2)
    layer(rng.normal(size=(2, 4, 8)).astype("float32"))
    on_accelerator = jax.devices()[0].platform in ("gpu", "tpu")
    assert fused_calls == ([layer.name] if on_accelerator else [])
    with pytest.raises(ValueError, match="must be one of"):
        set_fused_attention("sometimes")


def test_fused_gradients_equal_the_explicit_ones(rng):
    import jax

    b, s, d = 2, 6, 8
    layer = MultiHeadAttention(num_heads=2)
    x = rng.normal(size=(b, s, d)).astype("float32")
    padding = _left_and_right_padding(b + 1, s)[1:]
    layer(x)
    randomize_weights(layer)
    weights = [v.value for v in layer.trainable_variables]

    def loss(weights, x, scores):
        outputs, _ = layer.stateless_call(weights, [], x, padding_mask=padding, use_causal_mask=True,
                                          return_attention_scores=scores)
        outputs = outputs[0] if scores else outputs
        return (outputs ** 2).sum()

    fused = jax.grad(loss, argnums=(0, 1))(weights, x, False)
    explicit = jax.grad(loss, argnums=(0, 1))(weights, x, True)
    for got, want in zip(jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(explicit), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_fused_gpt_under_bfloat16_matches_the_explicit_path(rng, fused_calls):
    backbone = models.GPTBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                  intermediate_dim=32, max_sequence_length=16, dropout=0.0, dtype="mixed_bfloat16")
    token_ids = rng.integers(0, 50, (2, 10)).astype("int32")
    padding = np.ones((2, 10), "int32")
    padding[1, 7:] = 0
    inputs = {"token_ids": token_ids, "padding_mask": padding}
    fused_calls.clear()
    fused = to_numpy(backbone(inputs)["sequence_output"]).astype("float32")
    assert len(fused_calls) == 2  # one per block
    explicit = backbone._forward({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()},
                                 return_attention_scores=True)["sequence_output"]
    explicit = to_numpy(explicit).astype("float32")
    real = padding.astype(bool)
    # bfloat16 keeps 8 bits of mantissa: the two paths round differently, within a few ulps.
    np.testing.assert_allclose(fused[real], explicit[real], atol=0.05, rtol=0.05)
    assert np.mean(np.abs(fused[real] - explicit[real])) < 0.01


def test_fused_grouped_query_attention_with_a_sliding_window_equals_the_explicit_path(rng, fused_calls):
    """The kernel pairs query head i with key/value head i // (h / h_kv) itself, as the explicit path does; with
    a KV cache holding only the key/value heads too."""
    b, s, d = 3, 9, 24
    layer = MultiHeadAttention(num_heads=6, num_key_value_heads=2, rotary_max_wavelength=100.0, sliding_window=4,
                               rotary_scaling={"rope_type": "linear", "factor": 2.0})
    x = rng.normal(size=(b, s, d)).astype("float32")
    padding = _left_and_right_padding(b, s)
    layer(x)
    randomize_weights(layer)
    fused_calls.clear()
    fused = layer(x, padding_mask=padding, use_causal_mask=True)
    assert fused_calls == [layer.name]
    explicit, _ = layer(x, padding_mask=padding, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), atol=2e-6)

    cache = layer.empty_cache(b, s + 2)
    fused, fused_cache = layer(x, cache=cache, cache_update_index=2, use_causal_mask=True)
    explicit, explicit_cache, _ = layer(x, cache=cache, cache_update_index=2, use_causal_mask=True,
                                        return_attention_scores=True)
    assert fused_cache.shape == (b, 2, s + 2, 2, 4)
    np.testing.assert_allclose(to_numpy(fused), to_numpy(explicit), atol=2e-6)
    np.testing.assert_array_equal(to_numpy(fused_cache), to_numpy(explicit_cache))
