"""Token classification (NER, POS): CoNLL reader and sub-word label alignment."""

import numpy as np
import tensorflow as tf

from kzoo.data import _common
from kzoo.data.readers import ReadReport, input_paths
from kzoo.text import packing
from kzoo.text.lines import file_lines


class TaggedSentence(tuple):
    """`(tokens, labels)`, unpacks like a pair; `location(i)` is the `"path:line"` of token `i`."""

    def __new__(cls, tokens, labels, path=None, lines=None):
        sentence = super().__new__(cls, (tokens, labels))
        sentence.path, sentence.lines = path, lines
        return sentence

    def location(self, index):
        if self.path is None or not self.lines:
            return None
        return f"{self.path}:{self.lines[index]}"


def read_conll(paths, strict_utf8=False):
    """Reads CoNLL files: a token per line, its label in the last column, blank lines between sentences.

    Columns are separated by whitespace (spaces or tabs); `-DOCSTART-` lines are
    skipped. A line with fewer than two columns raises naming file and line. A sentence
    with a line that is not UTF-8 text is dropped (counted in the report, see
    `kzoo.data.readers`).

    Returns:
        `(sentences, report)`: a list of `TaggedSentence`s, `(tokens, labels)` pairs of
        string lists that also know the file and line of each token.
    """
    report = ReadReport()
    sentences = []
    for path in input_paths(paths):
        report.files += 1
        tokens, labels, lines, broken = [], [], [], False
        for number, line, ok in [*file_lines(path, report, strict_utf8), (None, "", True)]:  # "" ends the last
            if not ok:
                broken = True
                continue
            columns = line.split()
            if not columns:
                if broken:
                    report.skipped_records += 1
                elif tokens:
                    sentences.append(TaggedSentence(tokens, labels, path, lines))
                elif number is not None:
                    report.skipped_empty += 1
                tokens, labels, lines, broken = [], [], [], False
                continue
            if columns[0] == "-DOCSTART-":
                continue
            if len(columns) < 2:
                raise ValueError(f"{path}:{number}: expected 'token ... label' (at least 2 columns), got {line!r}.")
            tokens.append(columns[0])
            labels.append(columns[-1])
            lines.append(number)
    report.records = len(sentences)
    return sentences, report


def token_classification_dataset(
    sentences, tokenizer, label_vocabulary, *, sequence_length, cls_id, sep_id, pad_id, batch_size=None,
    shuffle=False, seed=0, input_context=None, shuffle_buffer=10_000, drop_remainder=False,
):
    """Tagged sentences → `BertTokenClassifier` examples with labels aligned to sub-words.

    Each word is tokenized on its own; its label goes on its first sub-token, and the
    other sub-tokens, [CLS], [SEP] and padding get label 0 with sample weight 0.
    Sentences longer than `sequence_length - 2` sub-tokens are truncated.

    Returns:
        `(features, labels, sample_weight)`: `token_ids`, `segment_ids`,
        `padding_mask`, labels int32 `(b, sequence_length)`, sample weight float32
        `(b, sequence_length)`.
    """
    _common.check_special_ids(cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)
    words = [tokens for tokens, _ in sentences]
    label_ids = [
        [label_vocabulary.id(label, where=_where(sentence, i, j), hint=_UNSEEN_TAG_HINT)
         for j, label in enumerate(sentence[1])]
        for i, sentence in enumerate(sentences, start=1)
    ]
    word_lengths = np.array([len(tokens) for tokens in words], np.int64)
    source = tf.data.Dataset.from_tensor_slices((
        tf.RaggedTensor.from_row_lengths(tf.constant([w for tokens in words for w in tokens], tf.string), word_lengths),
        tf.RaggedTensor.from_row_lengths(np.array([i for ids in label_ids for i in ids], np.int32), word_lengths),
    ))
    source = _common.shuffle_source(_common.shard_source(source, input_context), shuffle, seed, shuffle_buffer)
    budget = packing.check_budget(sequence_length, 2, "sequence_length")  # sub-tokens beside [CLS] and [SEP]

    word_prefix = getattr(tokenizer, "word_prefix", "")  # byte-level BPE: " ", as each word follows a space

    def to_example(word_strings, labels):
        if word_prefix:
            word_strings = tf.strings.join([word_prefix, word_strings])
        pieces = _common.tokenize_batch(tokenizer, word_strings)  # (words, sub-tokens)
        ids = pieces.flat_values[:budget]
        is_first = tf.cast(tf.equal(tf.ragged.range(pieces.row_lengths()).flat_values, 0), tf.int32)[:budget]
        word_labels = tf.repeat(labels, pieces.row_lengths())[:budget] * is_first
        packed = _common.pack_bert(ids, None, sequence_length, cls_id, sep_id, pad_id)
        zero = tf.zeros([1], tf.int32)
        label_row = _common.pad_to(tf.concat([zero, word_labels, zero], 0), sequence_length, 0)
        weights = _common.pad_to(tf.concat([zero, is_first, zero], 0), sequence_length, 0)
        return packed, label_row, tf.cast(weights, tf.float32)

    examples = source.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)


_UNSEEN_TAG_HINT = ("fix the tag, or add training sentences that use it (the model has one output per tag seen "
                    "in training)")


def _where(sentence, number, index):
    """`"path:line"` of token `index` of a `TaggedSentence`, else `"sentence N, word M"`."""
    location = sentence.location(index) if isinstance(sentence, TaggedSentence) else None
    return location or f"sentence {number}, word {index + 1}"
