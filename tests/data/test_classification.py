import numpy as np
import pytest
import tensorflow as tf

from kzoo import data, metrics
from tests.data.helpers import CLS, PAD, SEP, WhitespaceTokenizer, write

ARGS = dict(sequence_length=10, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def test_label_vocabulary_sorted_saved_and_loaded(tmp_path):
    labels = data.LabelVocabulary.from_labels(["pos", "neg", "pos", "neutral"])
    assert labels.labels == ["neg", "neutral", "pos"] and labels.encode(["pos", "neg"]) == [2, 0]
    labels.save(tmp_path / "labels.json")
    assert data.LabelVocabulary.load(tmp_path / "labels.json") == labels
    with pytest.raises(ValueError, match=r"label 'meh' was not seen in training; known labels: \['neg'"):
        labels.id("meh")


def test_csv_pair_classification(tmp_path):
    path = write(tmp_path / "train.tsv", "premise\thypothesis\tlabel\nthe cat sat\ta dog\tno\nthe\tthe cat\tyes\n")
    records, _ = data.read_csv(path, ["premise", "hypothesis", "label"])
    labels = data.LabelVocabulary.from_labels(r["label"] for r in records)
    dataset = data.classification_dataset(records, WhitespaceTokenizer(), labels, text_key="premise",
                                          text_pair_key="hypothesis", batch_size=2, **ARGS)
    features, label = next(iter(dataset))
    assert {name: (v.shape, v.dtype) for name, v in features.items()} == {
        name: ((2, 10), tf.int32) for name in ("token_ids", "segment_ids", "padding_mask")
    }
    ids = WhitespaceTokenizer().tokenize(tf.constant(["the cat sat", "a dog"])).to_list()
    np.testing.assert_array_equal(features["token_ids"][0], [CLS, *ids[0], SEP, *ids[1], SEP, PAD, PAD])
    np.testing.assert_array_equal(features["segment_ids"][0], [0, 0, 0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(label, [0, 1])


def test_unseen_label_errors_or_skips_with_count(tmp_path):
    train = [{"text": "the cat", "label": "pos"}, {"text": "a dog", "label": "neg"}]
    labels = data.LabelVocabulary.from_labels(r["label"] for r in train)
    test = train + [{"text": "the mat", "label": "other"}]
    with pytest.raises(ValueError, match=r"record 3: label 'other' was not seen in training; known labels"):
        data.classification_dataset(test, WhitespaceTokenizer(), labels, **ARGS)
    report = data.ReadReport()
    dataset = data.classification_dataset(test, WhitespaceTokenizer(), labels, on_unknown_label="skip",
                                          report=report, **ARGS)
    assert report.skipped_labels == 1 and len(list(dataset)) == 2
    assert report.messages() == ["dropped 1 records whose label was not seen in training"]


def test_long_single_text_is_truncated_with_sep_kept():
    records = [{"text": " ".join(["the"] * 30), "label": "x"}]
    labels = data.LabelVocabulary.from_labels(["x"])
    features, _ = next(iter(data.classification_dataset(records, WhitespaceTokenizer(), labels, **ARGS)))
    assert features["token_ids"].numpy()[-1] == SEP and features["padding_mask"].numpy().sum() == 10


def test_unseen_label_error_names_file_and_line(tmp_path):
    train, _ = data.read_csv(write(tmp_path / "train.csv", "text,label\nthe cat,pos\na dog,neg\n"), ["text", "label"])
    labels = data.LabelVocabulary.from_labels(r["label"] for r in train)
    dev, _ = data.read_csv(write(tmp_path / "dev.csv", "text,label\nthe,pos\n\nthe mat,other\n"), ["text", "label"],
                           with_location=True)
    with pytest.raises(ValueError, match=r"dev.csv:4: label 'other' was not seen in training; known labels"):
        data.classification_dataset(dev, WhitespaceTokenizer(), labels, **ARGS)


def test_held_out_labels_unseen_in_training_score_as_wrong(tmp_path):
    labels = data.LabelVocabulary.from_labels(["neg", "pos"])
    dev, _ = data.read_csv(write(tmp_path / "dev.csv", "text,label\na,pos\nb,neutral\nc,neg\nd,neutral\ne,mixed\n"),
                           ["text", "label"], with_location=True)
    gold, num_classes, unseen = data.held_out_label_ids(dev, labels)
    assert gold.tolist() == [1, 2, 0, 2, 3] and num_classes == 4
    assert unseen == {"neutral": [f"{tmp_path}/dev.csv:3", f"{tmp_path}/dev.csv:5"], "mixed": [f"{tmp_path}/dev.csv:6"]}
    perfect_on_seen = np.array([1, 0, 0, 1, 1])  # right on every seen label; no prediction can be 2 or 3
    assert metrics.accuracy(gold, perfect_on_seen) == pytest.approx(2 / 5, abs=1e-12)
    # per class F1: neg 2/3 (1 right, 1 extra), pos 2/4, neutral 0, mixed 0 (as scikit-learn scores them)
    assert metrics.f1_score(gold, perfect_on_seen, num_classes=num_classes) == pytest.approx((2 / 3 + 2 / 4) / 4)


def test_a_text_that_is_not_a_string_names_the_record(tmp_path):
    # A JSON null used to train as the text "None".
    path = write(tmp_path / "x.jsonl", '{"text": "the cat", "label": "pos"}\n{"text": null, "label": "neg"}\n')
    records, _ = data.read_jsonl(path, ["text", "label"], with_location=True)
    labels = data.LabelVocabulary.from_labels(r["label"] for r in records)
    with pytest.raises(ValueError, match=r"x.jsonl:2: 'text' must be a string, got None"):
        data.classification_dataset(records, WhitespaceTokenizer(), labels, **ARGS)
