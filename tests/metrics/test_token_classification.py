import numpy as np
import pytest

from kzoo import metrics

TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"]]


def test_entities_follow_conlleval():
    tags = ["O", "I-PER", "I-PER", "B-PER", "I-LOC", "O", "B-LOC", "I-LOC", "B-LOC"]
    assert metrics.bio_entities(tags) == [("PER", 1, 2), ("PER", 3, 3), ("LOC", 4, 4), ("LOC", 6, 7), ("LOC", 8, 8)]
    assert metrics.bio_entities(["B-PER", "I-LOC", "I-LOC", "I-PER"]) == [("PER", 0, 0), ("LOC", 1, 2), ("PER", 3, 3)]
    assert metrics.bio_entities(["O", "O"]) == [] and metrics.bio_entities([]) == []


def test_hand_computed_scores():
    scores = metrics.entity_scores(TRUE, PRED)
    # gold PER(0-1) LOC(3) ORG(1-3); predicted PER(0-1) ORG(3) ORG(1-2): only PER matches
    assert (scores["num_correct"], scores["num_predicted"], scores["num_true"]) == (1, 3, 3)
    assert scores["precision"] == scores["recall"] == scores["f1"] == pytest.approx(1 / 3)
    per_type = scores["per_type"]
    assert list(per_type) == ["LOC", "ORG", "PER"]
    assert per_type["PER"]["f1"] == 1.0
    assert per_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "num_correct": 0, "num_predicted": 0,
                               "num_true": 1}
    assert (per_type["ORG"]["num_predicted"], per_type["ORG"]["num_true"], per_type["ORG"]["f1"]) == (2, 1, 0.0)


def test_entities_do_not_cross_sentences_and_flat_input_is_one_sentence():
    assert metrics.entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]])["f1"] == 1.0
    assert metrics.entity_scores(["B-PER", "I-PER"], ["B-PER", "I-PER"])["num_true"] == 1


def test_no_entities_and_empty_give_zero():
    for scores in (metrics.entity_scores([["O", "O"]], [["O", "O"]]), metrics.entity_scores([], [])):
        assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0 and scores["per_type"] == {}
    scores = metrics.entity_scores([["O", "O"]], [["B-X", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)


def test_errors():
    with pytest.raises(ValueError, match="sentence 1: true_tags has 4 tags but predicted_tags has 3"):
        metrics.entity_scores(TRUE, [PRED[0], PRED[1][:3]])
    with pytest.raises(ValueError, match=r"must have the same length, got 2 and 1"):
        metrics.entity_scores(TRUE, PRED[:1])
    with pytest.raises(ValueError, match="sentence 0, position 1: tag 'E-PER' is not a BIO tag"):
        metrics.entity_scores([["B-PER", "E-PER"]], [["O", "O"]])


class _Vocabulary:  # stands in for kzoo.data.LabelVocabulary, which needs TensorFlow
    labels = ["B-LOC", "B-PER", "I-PER", "O"]


def test_word_level_tags_reads_first_sub_tokens():
    # [CLS] John ##ny lives Paris [SEP] [PAD]: words at 1, 3, 4 (weight 1), the rest weight 0 and label 0
    ids = np.array([[0, 1, 2, 3, 0, 0, 0], [0, 3, 0, 0, 0, 0, 0]])
    mask = np.array([[0, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0]], np.float32)
    assert metrics.word_level_tags(ids, mask, _Vocabulary()) == [["B-PER", "O", "B-LOC"], ["O"]]
    assert metrics.word_level_tags(ids, mask) == [[1, 3, 0], [3]]
    logits = np.eye(4)[ids]
    assert metrics.word_level_tags(logits, mask, _Vocabulary.labels) == [["B-PER", "O", "B-LOC"], ["O"]]
    padded = metrics.word_level_tags(ids, mask, _Vocabulary(), num_words=[3, 3])
    assert padded == [["B-PER", "O", "B-LOC"], ["O", "O", "O"]]
    assert metrics.word_level_tags(ids, mask, num_words=[4, 1], pad_label=3) == [[1, 3, 0, 3], [3]]


def test_word_level_tags_errors():
    ids, mask = np.zeros((2, 5), int), np.ones((2, 5))
    with pytest.raises(ValueError, match="subword_predictions must be"):
        metrics.word_level_tags(ids[:, :4], mask)
    with pytest.raises(ValueError, match="class id 7 is outside the 4 labels"):
        metrics.word_level_tags(ids + 7, mask, _Vocabulary())
    with pytest.raises(ValueError, match="row 0: first_subword_mask marks 5 words but num_words is 4"):
        metrics.word_level_tags(ids, mask, _Vocabulary(), num_words=[4, 5])
    with pytest.raises(ValueError, match="num_words and first_subword_mask \\(batch\\) must have the same length"):
        metrics.word_level_tags(ids, mask, _Vocabulary(), num_words=[5])
    with pytest.raises(ValueError, match="pass pad_label as a class id"):
        metrics.word_level_tags(ids, mask, num_words=[5, 5])


@pytest.mark.backend("tensorflow", reason="tf.data pipeline rows mapped back in NumPy: no Keras backend op")
def test_matches_the_token_classification_pipeline():
    """Gold label rows of `token_classification_dataset` map back to the words' tags, truncation included."""
    from kzoo import data
    from tests.metrics.helpers import CharTokenizer

    sentences = [(["Bob", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]),
                 (["New", "York", "is", "big"], ["B-LOC", "I-LOC", "O", "O"])]
    labels = data.LabelVocabulary.from_labels(tag for _, tags in sentences for tag in tags)
    # 9 sub-tokens fit: B o b l i v e s i | N e w Y o r k i s: "Paris" and "big" are cut off
    dataset = data.token_classification_dataset(sentences, CharTokenizer(), labels, sequence_length=11, cls_id=1,
                                                sep_id=2, pad_id=0, batch_size=2)
    _, targets, weights = next(iter(dataset))
    kept = metrics.word_level_tags(targets, weights, labels)
    assert kept == [["B-PER", "O", "O"], ["B-LOC", "I-LOC", "O"]]
    predicted = metrics.word_level_tags(targets, weights, labels, num_words=[4, 4])
    assert predicted == [["B-PER", "O", "O", "O"], ["B-LOC", "I-LOC", "O", "O"]]
    scores = metrics.entity_scores([tags for _, tags in sentences], predicted)
    assert (scores["precision"], scores["recall"]) == (1.0, pytest.approx(2 / 3))  # the cut-off "Paris" is missed
