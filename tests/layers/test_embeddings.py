import numpy as np
import pytest
from keras import ops

from kzoo.layers import (
    PositionEmbedding,
    RotaryEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEmbedding,
    TokenEmbedding,
)
from kzoo.layers.embeddings import rotary_scaling_with_context
from tests import reference
from tests.harness import REFERENCE_ATOL, assert_config_round_trip, to_numpy, weight


def test_token_embedding_lookup_and_tied_projection(rng):
    layer = TokenEmbedding(vocabulary_size=11, hidden_dim=6)
    ids = rng.integers(0, 11, (2, 5))
    embedded = to_numpy(layer(ids))
    table = weight(layer, "embeddings")
    np.testing.assert_allclose(embedded, table[ids], atol=REFERENCE_ATOL)
    hidden = rng.normal(size=(2, 5, 6)).astype("float32")
    logits = to_numpy(layer(hidden, reverse=True))
    np.testing.assert_allclose(logits, hidden @ table.T, atol=REFERENCE_ATOL)
    assert logits.shape == (2, 5, 11)
    assert_config_round_trip(layer)


def test_untied_reverse_projection_has_its_own_kernel(rng):
    layer = TokenEmbedding(vocabulary_size=7, hidden_dim=4, tie_weights=False)
    layer(np.zeros((1, 1), "int32"))
    hidden = rng.normal(size=(1, 3, 4)).astype("float32")
    kernel = weight(layer, "reverse_embeddings")
    np.testing.assert_allclose(to_numpy(layer(hidden, reverse=True)), hidden @ kernel, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("tie_weights", [True, False], ids=["tied", "untied"])
def test_padded_table_keeps_the_vocabulary_outside_the_layer(rng, tie_weights):
    layer = TokenEmbedding(vocabulary_size=11, hidden_dim=6, tie_weights=tie_weights, pad_to_multiple_of=8)
    ids = rng.integers(0, 11, (2, 5))
    embedded = to_numpy(layer(ids))
    table = to_numpy(layer.embeddings).astype(np.float64)
    assert table.shape == (16, 6)  # 11 rounded up to a multiple of 8
    np.testing.assert_allclose(embedded, table[ids], atol=REFERENCE_ATOL)
    hidden = rng.normal(size=(2, 5, 6)).astype("float32")
    logits = to_numpy(layer(hidden, reverse=True))
    assert logits.shape == (2, 5, 11)  # the padding rows' columns are cut off
    kernel = table.T if tie_weights else weight(layer, "reverse_embeddings")
    assert kernel.shape == (6, 16)
    np.testing.assert_allclose(logits, hidden @ kernel[:, :11], atol=REFERENCE_ATOL)
    with pytest.raises(ValueError, match=r"must lie in \[0, 11\)"):  # padding rows are not ids
        layer(np.array([[1, 12]]))
    assert_config_round_trip(layer)


def test_mask_zero_produces_padding_mask():
    layer = TokenEmbedding(vocabulary_size=5, hidden_dim=3, mask_zero=True)
    mask = to_numpy(layer.compute_mask(np.array([[3, 1, 0, 0]])))
    np.testing.assert_array_equal(mask, [[True, True, False, False]])


def test_ids_outside_vocabulary_raise_value_error():
    layer = TokenEmbedding(vocabulary_size=5, hidden_dim=3)
    with pytest.raises(ValueError, match=r"`inputs` must lie in \[0, 5\)"):
        layer(np.array([[1, 5]]))
    with pytest.raises(ValueError, match="must lie in"):
        layer(np.array([[-1, 2]]))


def test_float_ids_and_wrong_hidden_size_raise_value_error():
    layer = TokenEmbedding(vocabulary_size=5, hidden_dim=3)
    with pytest.raises(ValueError, match="integer token ids"):
        layer(np.ones((1, 2), "float32"))
    layer(np.array([[1]]))
    with pytest.raises(ValueError, match="last dimension 4, but the layer expects 3"):
        layer(np.ones((1, 2, 4), "float32"), reverse=True)


def test_segment_embedding(rng):
    layer = SegmentEmbedding(num_segments=2, hidden_dim=4)
    ids = rng.integers(0, 2, (3, 6))
    np.testing.assert_allclose(to_numpy(layer(ids)), weight(layer, "embeddings")[ids], atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        layer(np.array([[2]]))


@pytest.mark.parametrize("start_index", [0, 3])
def test_learned_position_embedding_slices_from_start_index(rng, start_index):
    layer = PositionEmbedding(max_sequence_length=8)
    x = rng.normal(size=(2, 4, 6)).astype("float32")
    out = to_numpy(layer(x, start_index=start_index))
    table = weight(layer, "embeddings")
    np.testing.assert_allclose(out, np.broadcast_to(table[start_index:start_index + 4], (2, 4, 6)), atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


def test_position_offset_skips_leading_rows(rng):
    layer = PositionEmbedding(max_sequence_length=5, position_offset=2)
    x = rng.normal(size=(1, 5, 3)).astype("float32")
    out = to_numpy(layer(x))
    assert weight(layer, "embeddings").shape == (7, 3)
    np.testing.assert_allclose(out[0], weight(layer, "embeddings")[2:], atol=REFERENCE_ATOL)


@pytest.mark.parametrize(
    "layer",
    [lambda: PositionEmbedding(4), lambda: SinusoidalPositionEmbedding(4)],
    ids=["learned", "sinusoidal"],
)
def test_sequence_longer_than_max_raises_value_error(layer):
    layer = layer()
    with pytest.raises(ValueError, match=r"length 5 exceeds `max_sequence_length`=4"):
        layer(np.zeros((1, 5, 4), "float32"))
    with pytest.raises(ValueError, match=r"length 6 exceeds"):
        layer(np.zeros((1, 3, 4), "float32"), start_index=3)


def test_position_embedding_rejects_wrong_rank_and_width():
    layer = PositionEmbedding(4)
    with pytest.raises(ValueError, match=r"\(batch, sequence, hidden\)"):
        layer(np.zeros((2, 4), "float32"))
    layer(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="last dimension 6, but the layer expects 4"):
        layer(np.zeros((1, 2, 6), "float32"))


@pytest.mark.parametrize("start_index", [0, 7])
def test_sinusoidal_matches_paper_formula(start_index):
    layer = SinusoidalPositionEmbedding(max_sequence_length=64)
    out = to_numpy(layer(np.zeros((2, 9, 10), "float32"), start_index=start_index))
    expected = reference.sinusoidal(9, 10, start=start_index)
    np.testing.assert_allclose(out[0], expected, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(out[1], expected, atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


def test_sinusoidal_needs_even_width():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionEmbedding(8)(np.zeros((1, 2, 5), "float32"))


@pytest.mark.parametrize(
    "rotary_dim, interleaved, start_index",
    [(None, False, 0), (None, True, 0), (4, False, 5), (None, False, 3)],
)
def test_rotary_matches_complex_rotation(rng, rotary_dim, interleaved, start_index):
    layer = RotaryEmbedding(max_wavelength=100.0, rotary_dim=rotary_dim, interleaved=interleaved)
    x = rng.normal(size=(2, 5, 3, 8)).astype("float32")  # (b, s, h, k)
    out = to_numpy(layer(x, start_index=start_index))
    positions = np.arange(5) + start_index
    for b in range(2):
        for h in range(3):
            expected = reference.rotary(x[b, :, h], positions, 100.0, rotary_dim, interleaved)
            np.testing.assert_allclose(out[b, :, h], expected, atol=REFERENCE_ATOL)
    assert_config_round_trip(layer)


def test_rotary_preserves_dot_products_of_equal_offsets(rng):
    """q_m . k_n depends only on m - n: the defining property of RoPE."""
    layer = RotaryEmbedding()
    q = rng.normal(size=(1, 1, 1, 8)).astype("float32")
    k = rng.normal(size=(1, 1, 1, 8)).astype("float32")
    dots = [
        float(ops.sum(layer(q, start_index=m) * layer(k, start_index=m - 2)))
        for m in (2, 5, 11)
    ]
    np.testing.assert_allclose(dots, dots[0], atol=1e-4)


# === Rotary scaling (rope_scaling kinds) against transformers' own frequency functions ===

ROPE_CASES = {
    "linear": {"rope_type": "linear", "factor": 2.5},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
    "yarn+mscale": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "mscale": 0.707,
                    "mscale_all_dim": 1.0, "beta_fast": 16.0, "beta_slow": 2.0, "truncate": False},
    "yarn+attention_factor": {"rope_type": "yarn", "factor": 3.0, "original_max_position_embeddings": 20,
                              "attention_factor": 0.8},
}
HEAD_DIM, BASE, CONTEXT = 16, 500.0, 64  # CONTEXT: transformers' max_position_embeddings


def _transformers_frequencies(scaling, sequence_length):
    """`(inv_freq, attention_factor)` from transformers' `ROPE_INIT_FUNCTIONS` (an independent reference)."""
    transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = transformers.LlamaConfig(hidden_size=2 * HEAD_DIM, num_attention_heads=2, head_dim=HEAD_DIM,
                                      max_position_embeddings=CONTEXT, rope_theta=BASE, rope_scaling=dict(scaling))
    inverse, attention_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](config, "cpu", seq_len=sequence_length)
    return inverse.numpy().astype(np.float64), float(attention_factor)


def _rotate_half(x, positions, inverse, attention_factor):
    """x (b, s, h, k) rotated by `positions[:, None] * inverse`, pairs (i, i + k/2), cos/sin times the factor."""
    angles = positions[:, None] * inverse[None, :]
    cos, sin = (np.concatenate([f(angles)] * 2, -1)[None, :, None, :] * attention_factor for f in (np.cos, np.sin))
    half = x.shape[-1] // 2
    return x * cos + np.concatenate([-x[..., half:], x[..., :half]], -1) * sin


def test_rotary_scaling_frequencies_and_attention_factor_match_transformers():
    for case, hf_scaling in ROPE_CASES.items():
        scaling = rotary_scaling_with_context(hf_scaling, CONTEXT)  # transformers' fallback
        layer = RotaryEmbedding(max_wavelength=BASE, scaling=scaling)
        lengths = (CONTEXT, 3 * CONTEXT + 5) if case == "dynamic" else (None,)
        for length in lengths:
            want, want_factor = _transformers_frequencies(hf_scaling, length)
            got, got_factor = layer.inverse_frequencies(HEAD_DIM, length or 1)
            np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5, err_msg=case)
            assert got_factor == pytest.approx(want_factor, rel=1e-6), case
        assert_config_round_trip(layer)


@pytest.mark.parametrize("case", ["llama3", "yarn+mscale", "dynamic"])
def test_scaled_rotary_rotates_by_the_scaled_angles(rng, case):
    """Applied to queries/keys: positions `start ..` times the scaled frequencies, cos/sin times the attention
    factor; "dynamic" uses the length reached, `start + s` (here beyond the trained context)."""
    scaling = rotary_scaling_with_context(ROPE_CASES[case], CONTEXT)  # transformers' fallback
    layer = RotaryEmbedding(max_wavelength=BASE, scaling=scaling)
    x = rng.normal(size=(2, 3, 2, HEAD_DIM)).astype("float32")
    start = 90
    inverse, attention_factor = _transformers_frequencies(ROPE_CASES[case], start + 3)
    want = _rotate_half(x.astype(np.float64), np.arange(start, start + 3, dtype=np.float64), inverse,
                        attention_factor)
    np.testing.assert_allclose(to_numpy(layer(x, start_index=start)), want, atol=1e-4)  # angles ~90 rad in fp32


BAD_SCALINGS = [
    ({"rope_type": "ntk", "factor": 2.0}, r"unknown rotary scaling 'rope_type'='ntk'; valid kinds are \['dynamic', "),
    ({"factor": 2.0}, r"unknown rotary scaling 'rope_type'=None"),
    ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8},
     r"'llama3' has missing key\(s\) \['low_freq_factor', 'high_freq_factor'\]"),
    ({"rope_type": "linear", "factor": 2.0, "beta_fast": 3}, r"'linear' has unknown key\(s\) \['beta_fast'\]"),
    ({"rope_type": "linear", "factor": -1.0}, r"'factor' must be a finite number > 0, got -1.0"),
    ({"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 8.5}, r"must be a positive integer"),
    ({"type": "linear", "rope_type": "dynamic", "factor": 2.0}, r"names two kinds"),
    ("linear", r"must be None or a dict"),
]


@pytest.mark.backend("tensorflow", reason="argument checks run before any backend op")
def test_bad_rotary_scaling_is_refused_in_one_line():
    for scaling, message in BAD_SCALINGS:
        with pytest.raises(ValueError, match=message) as error:
            RotaryEmbedding(scaling=scaling)
        assert "\n" not in str(error.value)
