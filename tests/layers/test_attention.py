import numpy as np
import pytest

from kzoo.layers import MultiHeadAttention
from tests import reference
from tests.harness import REFERENCE_ATOL, assert_config_round_trip, randomize_weights, to_numpy, weight


def _reference(layer, query, key_value=None, **kwargs):
    names = ("query", "key", "value", "output")
    kernels = [weight(layer, f"{n}/kernel") for n in names]
    biases = [weight(layer, f"{n}/bias") for n in names] if layer.use_bias else [None] * 4
    key_value = query if key_value is None else key_value
    return reference.attention(
        query.astype(np.float64), key_value.astype(np.float64), *kernels, *biases, **kwargs
    )


def _padding(rng, b, t):
    lengths = rng.integers(1, t + 1, b)
    lengths[0] = t
    return (np.arange(t)[None, :] < lengths[:, None]).astype("int32")


@pytest.mark.parametrize("causal", [False, True], ids=["padding", "padding+causal"])
def test_self_attention_matches_per_head_formula(rng, causal):
    layer = MultiHeadAttention(num_heads=3)
    x = rng.normal(size=(3, 6, 12)).astype("float32")
    padding = _padding(rng, 3, 6)
    out, scores = layer(x, padding_mask=padding, use_causal_mask=causal, return_attention_scores=True)
    randomize_weights(layer)
    out, scores = layer(x, padding_mask=padding, use_causal_mask=causal, return_attention_scores=True)
    mask = reference.padding_and_causal_mask(padding, 6, 6, causal)
    want_out, want_scores = _reference(layer, x, mask=mask)
    np.testing.assert_allclose(to_numpy(out), want_out, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(to_numpy(scores), want_scores, atol=REFERENCE_ATOL)
    # Masked keys get no weight at all.
    assert np.all(to_numpy(scores)[~np.broadcast_to(mask[:, None], want_scores.shape)] < 1e-12)


def test_cross_attention_with_other_length_and_width(rng):
    layer = MultiHeadAttention(num_heads=2, key_dim=5, output_dim=7, attention_scale=0.3)
    query = rng.normal(size=(2, 4, 8)).astype("float32")
    memory = rng.normal(size=(2, 9, 6)).astype("float32")
    padding = _padding(rng, 2, 9)
    layer(query, key_value=memory)
    randomize_weights(layer)
    out = layer(query, key_value=memory, padding_mask=padding)
    mask = reference.padding_and_causal_mask(padding, 4, 9, False)
    want, _ = _reference(layer, query, memory, mask=mask, scale=0.3)
    assert out.shape == (2, 4, 7)
    np.testing.assert_allclose(to_numpy(out), want, atol=REFERENCE_ATOL)


def test_attention_bias_and_custom_mask_without_biases(rng):
    layer = MultiHeadAttention(num_heads=2, use_bias=False, attention_scale=1.0)
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    bias = rng.normal(size=(1, 2, 5, 5)).astype("float32")
    custom = rng.random((2, 5, 5)) > 0.3
    custom[:, :, 0] = True
    out = layer(x, attention_bias=bias, attention_mask=custom, use_causal_mask=True)
    assert len(layer.weights) == 4
    want, _ = _reference(layer, x, bias=bias, scale=1.0, mask=custom & np.tril(np.ones((5, 5), bool)))
    np.testing.assert_allclose(to_numpy(out), want, atol=REFERENCE_ATOL)


def test_fully_masked_query_is_finite(rng):
    layer = MultiHeadAttention(num_heads=1)
    x = rng.normal(size=(1, 3, 4)).astype("float32")
    out = layer(x, padding_mask=np.zeros((1, 3), "int32"))
    assert np.all(np.isfinite(to_numpy(out)))


def test_rotary_attention_matches_reference(rng):
    layer = MultiHeadAttention(num_heads=2, rotary_max_wavelength=10000.0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    out = layer(x, use_causal_mask=True)
    want, _ = _reference(
        layer, x, mask=reference.padding_and_causal_mask(np.ones((2, 5)), 5, 5, True),
        rotate=reference.rotary,
    )
    np.testing.assert_allclose(to_numpy(out), want, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("rotary", [None, 10000.0])
def test_kv_cache_one_token_at_a_time_equals_full_causal_pass(rng, rotary):
    layer = MultiHeadAttention(num_heads=2, rotary_max_wavelength=rotary)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    padding = np.ones((2, 6), "int32")
    padding[1, :2] = 0  # a left-padded prompt
    full = to_numpy(layer(x, padding_mask=padding, use_causal_mask=True))
    cache = layer.empty_cache(2, 6)
    prefill, cache = layer(x[:, :3], padding_mask=padding, use_causal_mask=True, cache=cache, cache_update_index=0)
    steps = [to_numpy(prefill)]
    for index in range(3, 6):
        out, cache = layer(
            x[:, index:index + 1], padding_mask=padding, use_causal_mask=True, cache=cache,
            cache_update_index=index,
        )
        steps.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=REFERENCE_ATOL)


def test_static_cross_attention_cache_equals_projection(rng):
    layer = MultiHeadAttention(num_heads=2)
    query = rng.normal(size=(1, 3, 4)).astype("float32")
    memory = rng.normal(size=(1, 5, 4)).astype("float32")
    direct = layer(query, key_value=memory)
    cache = layer.compute_cache(memory)
    cached, same_cache = layer(query, cache=cache)
    np.testing.assert_allclose(to_numpy(cached), to_numpy(direct), atol=REFERENCE_ATOL)
    assert same_cache is cache


def test_config_round_trip():
    assert_config_round_trip(
        MultiHeadAttention(num_heads=4, key_dim=3, output_dim=5, use_bias=False, dropout=0.1,
                           attention_scale=1.0, rotary_max_wavelength=500.0, rotary_dim=2)
    )


def test_dropout_only_in_training(rng):
    layer = MultiHeadAttention(num_heads=2, dropout=0.5)
    x = rng.normal(size=(1, 4, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(layer(x, training=False)))
    assert not np.allclose(to_numpy(layer(x, training=True)), to_numpy(layer(x)))


def test_num_heads_must_divide_hidden_dim():
    with pytest.raises(ValueError, match=r"`hidden_dim \(the query width\)`=10 is not divisible by `num_heads`=4"):
        MultiHeadAttention(num_heads=4)(np.zeros((1, 2, 10), "float32"))


def test_bad_inputs_name_the_argument():
    layer = MultiHeadAttention(num_heads=2)
    with pytest.raises(ValueError, match=r"`query` must be \(batch, sequence, hidden\)"):
        layer(np.zeros((2, 4), "float32"))
    layer(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="`query` has last dimension 6, but the layer expects 4"):
        layer(np.zeros((1, 2, 6), "float32"))
    with pytest.raises(ValueError, match="`padding_mask` must have rank 2"):
        layer(np.zeros((1, 2, 4), "float32"), padding_mask=np.ones((1, 1, 2)))
    with pytest.raises(ValueError, match="`cache_update_index` was given without a `cache`"):
        layer(np.zeros((1, 2, 4), "float32"), cache_update_index=0)
    with pytest.raises(ValueError, match=r"`cache` must have shape \(batch, 2, max_length, 2, 2\)"):
        layer(np.zeros((1, 1, 4), "float32"), cache=np.zeros((1, 2, 3, 4, 1), "float32"), cache_update_index=0)
    with pytest.raises(ValueError, match="`num_heads` must be a positive integer"):
        MultiHeadAttention(num_heads=0)
