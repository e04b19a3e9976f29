import numpy as np
import pytest
import tensorflow as tf

from kzoo import data
from tests.data.helpers import CLS, PAD, SEP, wordpiece, write

CONLL = """-DOCSTART- -X- O O

Broncos NNP B-NP B-ORG
played VBD B-VP O
cats NNS B-NP O

The DT B-NP O
dog NN I-NP B-ANIMAL
"""


def test_read_conll(tmp_path):
    sentences, report = data.read_conll(write(tmp_path / "train.conll", CONLL))
    assert sentences == [(["Broncos", "played", "cats"], ["B-ORG", "O", "O"]), (["The", "dog"], ["O", "B-ANIMAL"])]
    assert report.records == 2


def test_malformed_conll_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.conll", "Broncos B-ORG\nplayed\n")
    with pytest.raises(ValueError, match=r"bad.conll:2: expected 'token ... label'"):
        data.read_conll(path)


def test_labels_on_first_sub_token(tmp_path):
    sentences, _ = data.read_conll(write(tmp_path / "train.conll", CONLL))
    labels = data.LabelVocabulary.from_labels(label for _, tags in sentences for label in tags)
    tokenizer = wordpiece()
    dataset = data.token_classification_dataset(sentences, tokenizer, labels, sequence_length=8, cls_id=CLS,
                                                sep_id=SEP, pad_id=PAD, batch_size=2)
    features, targets, weights = next(iter(dataset))
    assert targets.shape == weights.shape == features["token_ids"].shape == (2, 8)
    assert targets.dtype == tf.int32 and weights.dtype == tf.float32
    pieces = [np.asarray(tokenizer.tokenize(tf.constant(w))).tolist() for w in ["Broncos", "played", "cats"]]
    assert [len(p) for p in pieces] == [1, 2, 2]  # play ##ed, cat ##s
    np.testing.assert_array_equal(features["token_ids"][0], [CLS, *sum(pieces, []), SEP, PAD, PAD][:8])
    o, org = labels.id("O"), labels.id("B-ORG")
    np.testing.assert_array_equal(targets[0], [0, org, o, 0, o, 0, 0, 0])
    np.testing.assert_array_equal(weights[0], [0, 1, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(weights[1], [0, 1, 1, 0, 0, 0, 0, 0])


def test_unseen_tag_names_file_and_line(tmp_path):
    # The message used to say "sentence 2" with no file, and suggested an option this pipeline does not have.
    sentences, _ = data.read_conll(write(tmp_path / "train.conll", CONLL))
    labels = data.LabelVocabulary.from_labels(label for _, tags in sentences for label in tags)
    dev, _ = data.read_conll(write(tmp_path / "dev.conll", "The O\ncat O\n\n-DOCSTART- O\nDenver B-LOC\nwon O\n"))
    with pytest.raises(ValueError, match=r"dev.conll:5: label 'B-LOC' was not seen in training; known labels: "
                                         r"\['B-ANIMAL', 'B-ORG', 'O'\]\. Fix the tag, or add training sentences"):
        data.token_classification_dataset(dev, wordpiece(), labels, sequence_length=8, cls_id=CLS, sep_id=SEP,
                                          pad_id=PAD)
    plain = [(["Denver"], ["B-LOC"])]  # sentences built in code have no file: their number and word instead
    with pytest.raises(ValueError, match=r"sentence 1, word 1: label 'B-LOC'"):
        data.token_classification_dataset(plain, wordpiece(), labels, sequence_length=8, cls_id=CLS, sep_id=SEP,
                                          pad_id=PAD)


def test_read_conll_sentences_know_their_lines(tmp_path):
    sentences, _ = data.read_conll(write(tmp_path / "train.conll", CONLL))
    assert [sentence.location(1) for sentence in sentences] == [f"{tmp_path}/train.conll:4",
                                                                 f"{tmp_path}/train.conll:8"]
    tokens, labels = sentences[1]
    assert tokens == ["The", "dog"] and labels == ["O", "B-ANIMAL"]
