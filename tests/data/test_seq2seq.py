import numpy as np
import tensorflow as tf

from kzoo import data
from tests.data.helpers import EOS, PAD, WhitespaceTokenizer, corpus

VOCAB = 128


def test_teacher_forcing_layout():
    pairs = [("the cat sat", "a dog ran"), {"source": "the", "target": "cat sat on the mat"}]
    dataset = data.seq2seq_dataset(pairs, WhitespaceTokenizer(), encoder_sequence_length=6, decoder_sequence_length=4,
                                   pad_id=PAD, eos_id=EOS, decoder_start_id=PAD, batch_size=2)
    features, targets, weights = next(iter(dataset))
    assert sorted(features) == ["decoder_padding_mask", "decoder_token_ids", "encoder_padding_mask",
                                "encoder_token_ids"]
    assert all(value.dtype == tf.int32 for value in features.values()) and weights.dtype == tf.float32
    tok = WhitespaceTokenizer().tokenize(tf.constant(["the cat sat", "a dog ran", "cat sat on"])).to_list()
    np.testing.assert_array_equal(features["encoder_token_ids"][0], tok[0] + [EOS, PAD, PAD])
    np.testing.assert_array_equal(features["encoder_padding_mask"][0], [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(targets[0], tok[1] + [EOS])
    np.testing.assert_array_equal(features["decoder_token_ids"][0], [PAD] + tok[1])
    # Truncated target keeps EOS at the end; decoder input is the target shifted right.
    np.testing.assert_array_equal(targets[1], tok[2] + [EOS])
    np.testing.assert_array_equal(features["decoder_token_ids"][1], [PAD] + tok[2])
    np.testing.assert_array_equal(weights, [[1, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(features["decoder_padding_mask"], weights)


def _reconstruct(inputs, targets):
    """Replaces each sentinel of `inputs` by the span that follows it in `targets`."""
    spans, current = {}, None
    for token in targets[:-1]:  # drop EOS
        if token >= VOCAB - 50:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs[:-1]:
        out.extend(spans[token] if token >= VOCAB - 50 else [token])
    return out


def test_span_corruption_reconstructs_and_has_t5_statistics():
    rng = np.random.default_rng(0)
    noise = spans = 0
    for index in range(50):
        ids = rng.integers(6, 70, size=100).astype(np.int32)
        inputs, targets = data.span_corruption(tf.constant(ids), [3, index], vocabulary_size=VOCAB, eos_id=EOS)
        inputs, targets = inputs.numpy().tolist(), targets.numpy().tolist()
        assert (len(inputs), len(targets)) == data.corrupted_lengths(100)
        assert inputs[-1] == EOS and targets[-1] == EOS
        assert _reconstruct(inputs, targets) == ids.tolist()
        sentinels = [t for t in inputs if t >= VOCAB - 50]
        assert sentinels == list(range(VOCAB - 1, VOCAB - 1 - len(sentinels), -1))  # counting down
        mask = data.noise_mask(100, [3, index]).numpy()
        noise += mask.sum()
        spans += np.sum(mask[1:] & ~mask[:-1]) + mask[0]
    assert noise == 50 * 15 and abs(noise / spans - 3.0) < 0.01


def test_span_corruption_dataset_is_deterministic_and_model_shaped():
    texts = [" ".join(document) for document in corpus(num_documents=20)]

    def make(seed):
        return data.span_corruption_dataset(texts, WhitespaceTokenizer(), raw_length=40, vocabulary_size=VOCAB,
                                            pad_id=PAD, eos_id=EOS, decoder_start_id=PAD, batch_size=4, seed=seed,
                                            shuffle=True)

    features, targets, weights = next(iter(make(5)))
    encoder_sequence_length, decoder_sequence_length = data.corrupted_lengths(40)
    assert features["encoder_token_ids"].shape == (4, encoder_sequence_length)
    assert features["decoder_token_ids"].shape == targets.shape == weights.shape == (4, decoder_sequence_length)
    np.testing.assert_array_equal(features["decoder_token_ids"][:, 1:], targets[:, :-1])
    again, _, _ = next(iter(make(5)))
    other, _, _ = next(iter(make(6)))
    np.testing.assert_array_equal(features["encoder_token_ids"], again["encoder_token_ids"])
    assert not np.array_equal(features["encoder_token_ids"], other["encoder_token_ids"])
