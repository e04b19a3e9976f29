"""Sequence classification pipeline and the label vocabulary shared with token classification."""

import json
import os

import numpy as np
import tensorflow as tf

from kzoo.data import _common
from kzoo.data.readers import LOCATION


class LabelVocabulary:
    """Sorted label strings ↔ class ids, built from training labels, saved as JSON.

    Example:
        labels = LabelVocabulary.from_labels(["pos", "neg", "pos"])   # ["neg", "pos"]
        labels.encode(["pos"])  # [1]
        labels.save("labels.json"); LabelVocabulary.load("labels.json")
    """

    def __init__(self, labels):
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Duplicate labels in {labels}.")
        self.labels = labels
        self._index = {label: i for i, label in enumerate(labels)}

    @classmethod
    def from_labels(cls, labels):
        return cls(sorted({str(label) for label in labels}))

    def __len__(self):
        return len(self.labels)

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and self.labels == other.labels

    def id(self, label, where="", hint="pass on_unknown_label='skip' to drop such records"):
        """Class id of `label`; an unknown label raises listing the known ones.

        `where` (e.g. `"train.csv:12"`) prefixes the message and `hint` ends it (what to do).
        """
        try:
            return self._index[str(label)]
        except KeyError:
            prefix = f"{where}: " if where else ""
            raise ValueError(f"{prefix}label {label!r} was not seen in training; known labels: {self.labels}. "
                             f"{hint[:1].upper()}{hint[1:]}.") from None

    def encode(self, labels):
        return [self.id(label) for label in labels]

    def decode(self, ids):
        return [self.labels[int(i)] for i in ids]

    def save(self, path):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"labels": self.labels}, handle, indent=1)

    @classmethod
    def load(cls, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"Label vocabulary {path!r} does not exist.")
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle)["labels"])


def encode_labels(records, label_vocabulary, label_key="label", on_unknown_label="error", report=None):
    """Keeps records whose label is known and returns `(records, ids)`.

    `on_unknown_label`: `"error"` (raise listing the known labels) or `"skip"` (drop,
    counted in `report.skipped_labels`).
    """
    if on_unknown_label not in ("error", "skip"):
        raise ValueError(f"on_unknown_label must be 'error' or 'skip', got {on_unknown_label!r}.")
    kept, ids = [], []
    for number, record in enumerate(records, start=1):
        label = str(record[label_key])
        if label not in label_vocabulary.labels and on_unknown_label == "skip":
            if report is not None:
                report.skipped_labels += 1
            continue
        ids.append(label_vocabulary.id(label, where=record.get(LOCATION, f"record {number}")))
        kept.append(record)
    return kept, ids


def held_out_label_ids(records, label_vocabulary, label_key="label"):
    """Gold class ids for scoring held-out `records`, labels unseen in training included.

    A label not in `label_vocabulary` gets an id after the vocabulary's, one per distinct
    such label. No prediction of a model with `len(label_vocabulary)` outputs equals it, so
    `kzoo.metrics.accuracy` and `kzoo.metrics.f1_score(..., num_classes=num_classes)` count
    the record as wrong, as scikit-learn does for a gold label that is never predicted.

    Returns:
        `(ids, num_classes, unseen)`: int32 `(n,)` ids, the number of classes including
        the unseen ones, and `{label: [location, ...]}` of the unseen labels (the
        record's `"_location"` from a reader's `with_location=True`, else `"record N"`).
    """
    ids, unseen = [], {}
    for number, record in enumerate(records, start=1):
        label = str(record[label_key])
        if label in label_vocabulary.labels:
            ids.append(label_vocabulary.id(label))
            continue
        unseen.setdefault(label, []).append(record.get(LOCATION, f"record {number}"))
        ids.append(len(label_vocabulary) + list(unseen).index(label))
    return np.array(ids, np.int32), len(label_vocabulary) + len(unseen), unseen


def classification_dataset(
    records, tokenizer, label_vocabulary, *, sequence_length, cls_id, sep_id, pad_id, text_key="text",
    text_pair_key=None, label_key="label", on_unknown_label="error", report=None, batch_size=None,
    shuffle=False, seed=0, input_context=None, shuffle_buffer=10_000, drop_remainder=False,
):
    """Text (pair) classification examples for `BertClassifier`.

    Args:
        records: dicts from `read_csv`/`read_jsonl` with `text_key` (and
            `text_pair_key`) and `label_key`.
        label_vocabulary: a `LabelVocabulary` (build it from the training records with
            `LabelVocabulary.from_labels`, save it beside the model).
        on_unknown_label, report: see `encode_labels`.

    Returns:
        `(features, label)`: `token_ids`, `segment_ids`, `padding_mask` int32
        `(b, sequence_length)` as `[CLS] A [SEP] (B [SEP])`; label int32 `(b,)`.
    """
    _common.check_special_ids(cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)
    records, ids = encode_labels(records, label_vocabulary, label_key, on_unknown_label, report)
    if not records:
        raise ValueError("No classification records left to build a dataset from.")
    columns = [tf.constant(_texts(records, text_key), tf.string)]
    if text_pair_key is not None:
        columns.append(tf.constant(_texts(records, text_pair_key), tf.string))
    source = tf.data.Dataset.from_tensor_slices((tuple(columns), np.array(ids, np.int32)))
    source = _common.shuffle_source(_common.shard_source(source, input_context), shuffle, seed, shuffle_buffer)

    framing = _common.pair_framing(tokenizer)

    def to_example(texts, label):
        first = _common.tokenize_one(tokenizer, texts[0])
        second = _common.tokenize_one(tokenizer, texts[1]) if len(texts) > 1 else None
        return _common.pack_bert(first, second, sequence_length, cls_id, sep_id, pad_id, **framing), label

    examples = source.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)


def _texts(records, key):
    """The `key` strings of `records`; a missing or non-string text (JSON null, a number) raises naming the record."""
    texts = []
    for number, record in enumerate(records, start=1):
        text = record.get(key)
        if not isinstance(text, str):
            where = record.get(LOCATION, f"record {number}")
            raise ValueError(f"{where}: {key!r} must be a string, got {text!r:.60}; fix the record or the column name.")
        texts.append(text)
    return texts
