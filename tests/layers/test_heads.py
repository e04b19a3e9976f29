import numpy as np
import pytest

from kzoo.layers import (
    ClassificationHead,
    MaskedLMHead,
    Pooler,
    SpanHead,
    TokenClassificationHead,
    TokenEmbedding,
)
from tests import reference
from tests.harness import REFERENCE_ATOL, assert_config_round_trip, randomize_weights, to_numpy, weight


def test_masked_lm_head_is_transform_tied_projection_and_bias(rng):
    embedding = TokenEmbedding(vocabulary_size=13, hidden_dim=6)
    head = MaskedLMHead(token_embedding=embedding, norm_epsilon=1e-12)
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    positions = np.array([[0, 3], [4, 1]])
    head(x, mask_positions=positions)
    randomize_weights(head)
    logits = to_numpy(head(x, mask_positions=positions))
    gathered = np.stack([x[b, positions[b]] for b in range(2)]).astype(np.float64)
    hidden = reference.gelu(gathered @ weight(head, "transform/kernel") + weight(head, "transform/bias"))
    hidden = reference.layer_norm(hidden, weight(head, "norm/scale"), weight(head, "norm/bias"), 1e-12)
    table = to_numpy(embedding.embeddings).astype(np.float64)
    np.testing.assert_allclose(logits, hidden @ table.T + weight(head, "masked_lm_head/bias"), atol=REFERENCE_ATOL)
    assert logits.shape == (2, 2, 13)
    assert head.token_embedding is embedding  # tied, not copied
    assert head(x).shape == (2, 5, 13)
    clone = assert_config_round_trip(head)
    assert clone.token_embedding.vocabulary_size == 13


def test_masked_lm_head_checks_the_embedding(rng):
    with pytest.raises(ValueError, match="must be a kzoo TokenEmbedding"):
        MaskedLMHead(token_embedding="embeddings")
    # Hidden states wider than the table (ELECTRA's generator): the transform maps 3 -> 4, the table's width.
    head = MaskedLMHead(token_embedding=TokenEmbedding(vocabulary_size=5, hidden_dim=4))
    assert head(np.zeros((1, 2, 3), "float32")).shape == (1, 2, 5)
    assert tuple(head.transform.kernel.shape) == (3, 4) and tuple(head.norm.scale.shape) == (4,)


def test_pooler_and_classification_head(rng):
    x = rng.normal(size=(3, 4, 6)).astype("float32")
    pooler = Pooler()
    pooled = to_numpy(pooler(x))
    want = np.tanh(x[:, 0] @ weight(pooler, "kernel") + weight(pooler, "bias"))
    np.testing.assert_allclose(pooled, want, atol=REFERENCE_ATOL)
    head = ClassificationHead(num_classes=4, dropout=0.1, intermediate_dim=5)
    logits = to_numpy(head(pooled))
    hidden = np.tanh(pooled @ weight(head, "intermediate/kernel") + weight(head, "intermediate/bias"))
    want = hidden @ weight(head, "logits/kernel") + weight(head, "logits/bias")
    np.testing.assert_allclose(logits, want, atol=REFERENCE_ATOL)
    assert_config_round_trip(pooler)
    assert_config_round_trip(head)
    with pytest.raises(ValueError, match=r"`inputs` must be \(batch, hidden\)"):
        ClassificationHead(num_classes=2)(x)


def test_token_classification_head_keeps_mask(rng):
    head = TokenClassificationHead(num_classes=3)
    x = rng.normal(size=(2, 4, 6)).astype("float32")
    logits = to_numpy(head(x))
    np.testing.assert_allclose(logits, x @ weight(head, "kernel") + weight(head, "bias"), atol=REFERENCE_ATOL)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(to_numpy(head.compute_mask(x, mask)), mask)
    assert_config_round_trip(head)


def test_span_head_masks_padding(rng):
    head = SpanHead()
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    head(x)
    randomize_weights(head)
    start, end = (to_numpy(t) for t in head(x, padding_mask=padding))
    raw = x @ weight(head, "kernel") + weight(head, "bias")
    np.testing.assert_allclose(start[padding == 1], raw[..., 0][padding == 1], atol=REFERENCE_ATOL)
    np.testing.assert_allclose(end[padding == 1], raw[..., 1][padding == 1], atol=REFERENCE_ATOL)
    assert np.all(start[padding == 0] < -1e8) and np.all(end[padding == 0] < -1e8)
    assert start.dtype == np.float32
    assert_config_round_trip(head)
