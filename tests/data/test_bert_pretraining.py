import numpy as np
import pytest
import tensorflow as tf

from kzoo import data
from tests.data.helpers import CLS, MASK, PAD, SEP, WhitespaceTokenizer, corpus

VOCAB = 82
SPECIAL = (PAD, CLS, SEP, MASK)


def test_mask_tokens_statistics():
    rng = np.random.default_rng(0)
    selected = mask_count = random_count = kept = candidates = 0
    ids = rng.integers(6, VOCAB, size=(80, 64)).astype(np.int32)
    ids[:, 0], ids[:, -1], ids[:, 50:63] = CLS, SEP, PAD
    for index, row in enumerate(ids):
        out = data.mask_tokens(row, [7, index], vocabulary_size=VOCAB, mask_id=MASK, special_ids=SPECIAL,
                               max_predictions=20)
        n = int(out["mask_weights"].numpy().sum())
        positions = out["mask_positions"].numpy()[:n]
        assert np.all(np.diff(positions) > 0) and not np.isin(row[positions], SPECIAL).any()
        np.testing.assert_array_equal(out["mask_ids"].numpy()[:n], row[positions])
        new = out["token_ids"].numpy()
        np.testing.assert_array_equal(np.delete(new, positions), np.delete(row, positions))
        candidates += 49
        selected += n
        mask_count += int((new[positions] == MASK).sum())
        kept += int((new[positions] == row[positions]).sum())
        random_count += int(((new[positions] != MASK) & (new[positions] != row[positions])).sum())
        assert not np.isin(new[positions], (PAD, CLS, SEP)).any()
    assert abs(selected / candidates - 0.15) < 0.01  # 3920 candidates
    assert abs(mask_count / selected - 0.8) < 0.05
    # "Random" replacements that draw the original id count as kept (1 in 76).
    assert abs(random_count / selected - 0.1) < 0.04
    assert abs(kept / selected - 0.1) < 0.04


def test_max_predictions_caps_the_selection():
    row = np.arange(6, 70, dtype=np.int32)
    out = data.mask_tokens(row, [0, 0], vocabulary_size=VOCAB, mask_id=MASK, special_ids=SPECIAL,
                           max_predictions=3)
    assert out["mask_positions"].shape == (3,) and out["mask_weights"].numpy().sum() == 3


def _dataset(seed=0, **kwargs):
    return data.bert_pretraining_dataset(
        corpus(num_documents=60), WhitespaceTokenizer(), sequence_length=32, max_predictions_per_sequence=6,
        vocabulary_size=VOCAB, cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK, seed=seed, **kwargs,
    )


def test_shapes_dtypes_and_packing():
    features, targets, weights = next(iter(_dataset(batch_size=8)))
    assert sorted(features) == ["mask_positions", "padding_mask", "segment_ids", "token_ids"]
    for name, shape in [("token_ids", (8, 32)), ("segment_ids", (8, 32)), ("padding_mask", (8, 32)),
                        ("mask_positions", (8, 6))]:
        assert features[name].shape == shape and features[name].dtype == tf.int32, name
    assert targets["mlm_logits"].shape == (8, 6) and targets["nsp_logits"].shape == (8,)
    assert targets["mlm_logits"].dtype == tf.int32 and targets["nsp_logits"].dtype == tf.int32
    assert weights["mlm_logits"].dtype == tf.float32
    for ids, segments, mask in zip(features["token_ids"].numpy(), features["segment_ids"].numpy(),
                                   features["padding_mask"].numpy(), strict=True):
        length = mask.sum()
        assert ids[0] == CLS and ids[length - 1] == SEP and (ids[:length] == SEP).sum() == 2
        assert np.all(ids[length:] == PAD)
        first_sep = np.flatnonzero(ids == SEP)[0]
        np.testing.assert_array_equal(segments[:length], [0] * (first_sep + 1) + [1] * (length - first_sep - 1))


def test_nsp_is_about_half_and_pairs_are_deterministic():
    firsts, seconds, labels = data.make_sentence_pairs(
        [[[d * 100 + s] * 5 for s in range(8)] for d in range(200)], max_num_tokens=29, seed=0
    )
    assert abs(np.mean(labels) - 0.5) < 0.05, np.mean(labels)
    for first, second, label in zip(firsts, seconds, labels, strict=True):
        same_document = first[0] // 100 == second[0] // 100
        assert same_document == (label == 0)
        if label == 0:  # the true continuation: the next sentence of the same document
            assert second[0] == first[-1] + 1
    again = data.make_sentence_pairs([[[d * 100 + s] * 5 for s in range(8)] for d in range(200)], 29, seed=0)
    assert again == (firsts, seconds, labels)
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        data.make_sentence_pairs([[[1, 2]]], 10)


def test_deterministic_with_seed():
    def flat(dataset):
        return np.concatenate([f["token_ids"].numpy() for f, _, _ in dataset])

    np.testing.assert_array_equal(flat(_dataset(seed=1, batch_size=4, shuffle=True)),
                                  flat(_dataset(seed=1, batch_size=4, shuffle=True)))
    assert not np.array_equal(flat(_dataset(seed=1, batch_size=4)), flat(_dataset(seed=2, batch_size=4)))


def test_shards_partition_the_unsharded_examples():
    def rows(**kwargs):
        return [f["token_ids"].numpy().tolist() for f, _, _ in _dataset(seed=4, **kwargs)]

    everything = rows()
    shards = [rows(input_context=tf.distribute.InputContext(2, i, 2)) for i in range(2)]
    assert shards[0] == everything[0::2] and shards[1] == everything[1::2]  # masks keyed by global index


def test_dupe_factor_adds_differently_paired_copies_after_the_original():
    options = dict(sequence_length=32, max_predictions_per_sequence=5, vocabulary_size=VOCAB, cls_id=CLS,
                   sep_id=SEP, pad_id=PAD, mask_id=MASK, seed=3)
    documents = corpus(num_documents=8)

    def rows(dataset):
        return [features["token_ids"].numpy().tolist() for features, _, _ in dataset]

    once = rows(data.bert_pretraining_dataset(documents, WhitespaceTokenizer(), **options))
    twice = rows(data.bert_pretraining_dataset(documents, WhitespaceTokenizer(), dupe_factor=2, **options))
    assert twice[: len(once)] == once  # copy 0 is the unduplicated data
    assert len(twice) > len(once) and twice[len(once):] != once[: len(twice) - len(once)]
    with pytest.raises(ValueError, match="dupe_factor must be >= 1"):
        data.bert_pretraining_dataset(documents, WhitespaceTokenizer(), dupe_factor=0, **options)
