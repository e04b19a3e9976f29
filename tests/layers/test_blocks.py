import numpy as np
import pytest

from kzoo.layers import DecoderBlock, EncoderBlock, TokenEmbedding
from tests import reference
from tests.harness import REFERENCE_ATOL, assert_config_round_trip, randomize_weights, to_numpy, weight


def _attention_ref(block, prefix, query, key_value, mask):
    kernels = [weight(block, f"{prefix}/{n}/kernel") for n in ("query", "key", "value", "output")]
    biases = [weight(block, f"{prefix}/{n}/bias") for n in ("query", "key", "value", "output")]
    return reference.attention(query, key_value, *kernels, *biases, mask=mask)[0]


def _norm_ref(block, name, x):
    return reference.layer_norm(x, weight(block, f"{name}/scale"), weight(block, f"{name}/bias"), block.norm_epsilon)


def _ffn_ref(block, x):
    w = lambda n: weight(block, f"feed_forward/{n}")  # noqa: E731
    return reference.feed_forward(x, block.activation, w("up/kernel"), w("up/bias"), w("down/kernel"), w("down/bias"))


def _residual_ref(block, x, sublayer, norm):
    if block.norm_first:
        return x + sublayer(_norm_ref(block, norm, x))
    return _norm_ref(block, norm, x + sublayer(x))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_block_matches_composition(rng, norm_first):
    block = EncoderBlock(num_heads=2, intermediate_dim=12, norm_first=norm_first, norm_epsilon=1e-6)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    block(x)
    randomize_weights(block)
    out = to_numpy(block(x, padding_mask=padding))
    mask = reference.padding_and_causal_mask(padding, 5, 5, False)
    attend = lambda y: _attention_ref(block, "self_attention", y, y, mask)  # noqa: E731
    h = _residual_ref(block, x.astype(np.float64), attend, "self_attention_norm")
    h = _residual_ref(block, h, lambda y: _ffn_ref(block, y), "feed_forward_norm")
    np.testing.assert_allclose(out, h, atol=REFERENCE_ATOL)
    assert_config_round_trip(block)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_block_with_cross_attention_matches_composition(rng, norm_first):
    block = DecoderBlock(
        num_heads=2, intermediate_dim=12, use_cross_attention=True, norm_first=norm_first, activation="relu"
    )
    x = rng.normal(size=(2, 4, 8)).astype("float32")
    memory = rng.normal(size=(2, 6, 8)).astype("float32")
    encoder_padding = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    block(x, encoder_outputs=memory)
    randomize_weights(block)
    out = to_numpy(block(x, encoder_outputs=memory, encoder_padding_mask=encoder_padding))
    causal = reference.padding_and_causal_mask(np.ones((2, 4)), 4, 4, True)
    cross = reference.padding_and_causal_mask(encoder_padding, 4, 6, False)
    m = memory.astype(np.float64)
    attend = lambda y: _attention_ref(block, "self_attention", y, y, causal)  # noqa: E731
    h = _residual_ref(block, x.astype(np.float64), attend, "self_attention_norm")
    h = _residual_ref(block, h, lambda y: _attention_ref(block, "cross_attention", y, m, cross), "cross_attention_norm")
    h = _residual_ref(block, h, lambda y: _ffn_ref(block, y), "feed_forward_norm")
    np.testing.assert_allclose(out, h, atol=REFERENCE_ATOL)
    assert_config_round_trip(block)


DECODER_VARIANTS = {
    "gpt": dict(norm_first=True),
    "rotary_gated_rms": dict(norm_first=True, norm_type="rms", gated_feed_forward=True, activation="silu",
                             use_bias=False, rotary_max_wavelength=10000.0),
    "seq2seq_post_norm": dict(use_cross_attention=True),
}


@pytest.mark.parametrize("variant", DECODER_VARIANTS, ids=list(DECODER_VARIANTS))
def test_kv_cached_decoding_equals_full_causal_pass(rng, variant):
    options = DECODER_VARIANTS[variant]
    block = DecoderBlock(num_heads=2, intermediate_dim=16, **options)
    cross = options.get("use_cross_attention", False)
    x = rng.normal(size=(2, 7, 8)).astype("float32")
    memory = rng.normal(size=(2, 5, 8)).astype("float32") if cross else None
    encoder_padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]) if cross else None
    kwargs = dict(encoder_outputs=memory, encoder_padding_mask=encoder_padding) if cross else {}
    block(x, **kwargs)
    randomize_weights(block)
    full = to_numpy(block(x, **kwargs))

    cache = block.empty_self_attention_cache(2, 7)
    step_kwargs = {}
    if cross:
        step_kwargs = dict(cross_attention_cache=block.compute_cross_attention_cache(memory),
                           encoder_padding_mask=encoder_padding)
    steps = []
    for index in range(7):
        outputs = block(x[:, index:index + 1], self_attention_cache=cache, cache_update_index=index, **step_kwargs)
        steps.append(to_numpy(outputs[0]))
        cache = outputs[1]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=REFERENCE_ATOL)


def test_keras_mask_is_used_as_padding_mask_and_propagates(rng):
    embedding = TokenEmbedding(vocabulary_size=20, hidden_dim=8, mask_zero=True)
    block = EncoderBlock(num_heads=2, intermediate_dim=16)
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 1]])
    hidden = embedding(ids)
    implicit = block(hidden)
    explicit = block(hidden, padding_mask=ids != 0)
    np.testing.assert_allclose(to_numpy(implicit), to_numpy(explicit), atol=1e-6)
    unmasked = block(to_numpy(hidden))
    assert not np.allclose(to_numpy(unmasked)[0, :3], to_numpy(implicit)[0, :3], atol=1e-4)
    np.testing.assert_array_equal(to_numpy(block.compute_mask(hidden, ids != 0)), ids != 0)


def test_encoder_returns_attention_scores(rng):
    block = EncoderBlock(num_heads=2, intermediate_dim=4)
    out, scores = block(rng.normal(size=(1, 3, 4)).astype("float32"), return_attention_scores=True)
    assert out.shape == (1, 3, 4) and scores.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=1e-6)


def test_decoder_returns_both_score_maps(rng):
    block = DecoderBlock(num_heads=2, intermediate_dim=4, use_cross_attention=True)
    x, memory = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 6, 4))
    _, scores = block(x.astype("float32"), encoder_outputs=memory.astype("float32"), return_attention_scores=True)
    assert scores["self_attention"].shape == (1, 2, 3, 3)
    assert scores["cross_attention"].shape == (1, 2, 3, 6)


def test_block_errors_name_the_argument(rng):
    with pytest.raises(ValueError, match="`hidden_dim \\(the inputs' width\\)`=6 is not divisible by `num_heads`=4"):
        EncoderBlock(num_heads=4, intermediate_dim=8)(np.zeros((1, 2, 6), "float32"))
    with pytest.raises(ValueError, match=r"`inputs` must be \(batch, sequence, hidden\)"):
        EncoderBlock(num_heads=2, intermediate_dim=8)(np.zeros((2, 6), "float32"))
    block = EncoderBlock(num_heads=2, intermediate_dim=8)
    block(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="`inputs` has last dimension 8, but the layer expects 4"):
        block(np.zeros((1, 2, 8), "float32"))
    with pytest.raises(ValueError, match="unknown `norm_type`='batch'"):
        EncoderBlock(num_heads=2, intermediate_dim=8, norm_type="batch")
    decoder = DecoderBlock(num_heads=2, intermediate_dim=8, use_cross_attention=True)
    with pytest.raises(ValueError, match="pass `encoder_outputs`"):
        decoder(np.zeros((1, 2, 4), "float32"))
    plain = DecoderBlock(num_heads=2, intermediate_dim=8)
    with pytest.raises(ValueError, match="has no cross attention"):
        plain(np.zeros((1, 2, 4), "float32"), encoder_outputs=np.zeros((1, 2, 4), "float32"))
    plain(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="`self_attention_cache` needs `cache_update_index`"):
        plain(np.zeros((1, 1, 4), "float32"), self_attention_cache=plain.empty_self_attention_cache(1, 4))
