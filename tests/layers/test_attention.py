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


# === Grouped-query attention, sliding window, rotary scaling (Llama-style decoders) ===

SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0, "original_max_position_embeddings": 16},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 5},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 5, "beta_fast": 8.0},
}


def test_grouped_query_attention_equals_attention_with_repeated_key_value_heads(rng):
    """Query head i reads key/value head i // (h / h_kv), transformers' `repeat_kv` pairing."""
    grouped = MultiHeadAttention(num_heads=6, num_key_value_heads=2, output_bias=False, rotary_max_wavelength=100.0)
    plain = MultiHeadAttention(num_heads=6, output_bias=False, rotary_max_wavelength=100.0)
    x = rng.normal(size=(2, 7, 12)).astype("float32")
    padding = _padding(rng, 2, 7)
    grouped(x)
    plain(x)
    randomize_weights(grouped)
    assert [tuple(w.shape) for w in grouped.weights] == [(12, 6, 2), (6, 2), (12, 2, 2), (2, 2), (12, 2, 2), (2, 2),
                                                        (6, 2, 12)]  # no output bias
    for source, target in zip(grouped.weights, plain.weights, strict=True):
        value = to_numpy(source)
        if source.path.split("/")[-2] in ("key", "value"):
            value = np.repeat(value, 3, axis=-2)  # key/value head n serves query heads 3n, 3n+1, 3n+2
        target.assign(value)
    got, got_scores = grouped(x, padding_mask=padding, use_causal_mask=True, return_attention_scores=True)
    want, want_scores = plain(x, padding_mask=padding, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=REFERENCE_ATOL)
    np.testing.assert_allclose(to_numpy(got_scores), to_numpy(want_scores), atol=REFERENCE_ATOL)
    assert grouped.empty_cache(2, 5).shape == (2, 2, 5, 2, 2)
    assert [tuple(p.shape) for p in grouped.empty_past(2)] == [(2, 0, 2, 2)] * 2


def _decode_step_by_step(layer, x, padding, use_past):
    """A 3-token prefill, then one token at a time, through a fixed cache or a growing past."""
    b, s = x.shape[:2]
    state = layer.empty_past(b) if use_past else layer.empty_cache(b, s)
    outputs = []
    for start, stop in [(0, 3)] + [(i, i + 1) for i in range(3, s)]:
        if use_past:
            out, state = layer(x[:, start:stop], padding_mask=padding[:, :stop], use_causal_mask=True,
                               past_key_value=state)
        else:
            out, state = layer(x[:, start:stop], padding_mask=padding, use_causal_mask=True, cache=state,
                               cache_update_index=start)
        outputs.append(to_numpy(out))
    return np.concatenate(outputs, axis=1)


# The rope kinds differ only in their frequencies (backend-neutral NumPy, checked against transformers in
# test_embeddings.py); the decoding paths are the same Keras ops: JAX runs the window case (and the dynamic one
# below), where its eager per-shape compilation of every decoding step costs about 20 s a case.
ONE_BACKEND = pytest.mark.backend("tensorflow", reason="same ops as the gqa+window case, which runs on every backend")


@pytest.mark.parametrize("variant", [pytest.param("gqa", marks=ONE_BACKEND), "gqa+window"]
                         + [pytest.param(kind, marks=ONE_BACKEND) for kind in SCALINGS])
def test_cached_and_past_decoding_equal_the_full_pass(rng, variant):
    scaling = SCALINGS.get(variant)
    layer = MultiHeadAttention(num_heads=4, num_key_value_heads=2, use_bias=False, rotary_max_wavelength=100.0,
                               sliding_window=3 if variant == "gqa+window" else None, rotary_scaling=scaling)
    x = rng.normal(size=(2, 7, 16)).astype("float32")
    padding = np.ones((2, 7), "int32")
    padding[1, :2] = 0  # a left-padded prompt
    full = to_numpy(layer(x, padding_mask=padding, use_causal_mask=True))
    for use_past in (False, True):
        np.testing.assert_allclose(_decode_step_by_step(layer, x, padding, use_past), full, atol=REFERENCE_ATOL)


def test_dynamic_scaling_beyond_the_trained_context_rotates_each_step_by_the_length_reached(rng):
    """Past the trained context the base grows with the length: a cached step rotates its new keys by the
    length reached then (transformers' generate), so cache and past agree with each other, and no longer with
    one full pass over every token."""
    scaling = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 4}
    layer = MultiHeadAttention(num_heads=4, num_key_value_heads=2, rotary_max_wavelength=100.0,
                               rotary_scaling=scaling)
    x = rng.normal(size=(2, 8, 16)).astype("float32")
    padding = np.ones((2, 8), "int32")
    full = to_numpy(layer(x, padding_mask=padding, use_causal_mask=True))
    cached = _decode_step_by_step(layer, x, padding, use_past=False)
    np.testing.assert_allclose(_decode_step_by_step(layer, x, padding, use_past=True), cached, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(cached[:, :4], to_numpy(layer(x[:, :4], use_causal_mask=True)), atol=REFERENCE_ATOL)
    assert np.abs(cached[:, 5:] - full[:, 5:]).max() > 1e-3


@pytest.mark.backend("tensorflow", reason="the mask is integer index arithmetic; one backend checks it")
def test_sliding_window_mask_matches_transformers_mistral_mask():
    masking_utils = pytest.importorskip("transformers.masking_utils", reason="the test extra installs transformers")
    import torch

    from kzoo.layers.masks import causal_mask, sliding_window_mask

    window = 3
    function = masking_utils.sliding_window_causal_mask_function(window)
    for query_length, key_length, start in [(7, 7, 0), (1, 9, 8), (2, 10, 5)]:
        want = np.array([[bool(function(0, 0, torch.tensor(start + i), torch.tensor(j))) for j in range(key_length)]
                         for i in range(query_length)])
        got = to_numpy(sliding_window_mask(query_length, key_length, window, start)) & to_numpy(
            causal_mask(query_length, key_length, start))
        np.testing.assert_array_equal(got, want)
        assert got.sum(-1).max() == window  # each query sees itself and the window - 1 keys before it


@pytest.mark.backend("tensorflow", reason="the same ops as the gqa+window decoding case, which runs on every backend")
def test_sliding_window_attention_matches_the_per_head_formula(rng):
    layer = MultiHeadAttention(num_heads=2, sliding_window=2)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    padding = _padding(rng, 2, 6)
    layer(x)
    randomize_weights(layer)
    out, scores = layer(x, padding_mask=padding, use_causal_mask=True, return_attention_scores=True)
    offsets = np.arange(6)[:, None] - np.arange(6)[None, :]
    mask = reference.padding_and_causal_mask(padding, 6, 6, True) & (offsets < 2)[None]
    want, want_scores = _reference(layer, x, mask=mask)
    np.testing.assert_allclose(to_numpy(out), want, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(to_numpy(scores), want_scores, atol=REFERENCE_ATOL)


@pytest.mark.backend("tensorflow", reason="argument checks and config round trips, the same under every backend")
def test_new_arguments_round_trip_and_are_checked():
    layer = MultiHeadAttention(num_heads=4, num_key_value_heads=1, output_bias=True, use_bias=False,
                               sliding_window=4, rotary_max_wavelength=500.0, rotary_scaling={"type": "linear",
                                                                                               "factor": 2})
    clone = assert_config_round_trip(layer)
    assert clone.rotary_scaling == {"rope_type": "linear", "factor": 2}  # the older "type" spelling, renamed
    assert MultiHeadAttention(num_heads=4).num_key_value_heads == 4
    with pytest.raises(ValueError, match=r"`num_heads`=6 is not divisible by `num_key_value_heads`=4"):
        MultiHeadAttention(num_heads=6, num_key_value_heads=4)
    with pytest.raises(ValueError, match=r"`sliding_window` must be a positive integer"):
        MultiHeadAttention(num_heads=2, sliding_window=0)
    with pytest.raises(ValueError, match=r"set `rotary_max_wavelength` too"):
        MultiHeadAttention(num_heads=2, rotary_scaling={"rope_type": "linear", "factor": 2.0})
    cross = MultiHeadAttention(num_heads=2, sliding_window=2)
    with pytest.raises(ValueError, match="`sliding_window` is for self attention"):
        cross(np.zeros((1, 2, 4), "float32"), key_value=np.zeros((1, 3, 4), "float32"))
    grouped = MultiHeadAttention(num_heads=4, num_key_value_heads=2)
    grouped(np.zeros((1, 2, 8), "float32"))
    with pytest.raises(ValueError, match=r"`cache` must have shape \(batch, 2, max_length, 2, 2\)"):
        grouped(np.zeros((1, 1, 8), "float32"), cache=np.zeros((1, 2, 4, 4, 2), "float32"), cache_update_index=0)
