"""Marian (OPUS-MT) tokenizers as TensorFlow ops: two SentencePiece models and one shared `vocab.json`.

Reference: Junczys-Dowmunt et al. 2018 (Marian NMT) and the files OPUS-MT checkpoints ship: `source.spm` segments the
source language, `target.spm` the target language, and `vocab.json` (piece -> id, shared by both sides) numbers the
pieces; a piece missing from `vocab.json` is `<unk>`. A source text may start with a language code (">>fra<<", for
multilingual targets), kept as one token. `encode` appends `</s>`; rows are padded with `<pad>`, which is also
Marian's decoder start token.

Like Hugging Face's `MarianTokenizer` without `sacremoses` installed, no Moses punctuation normalization is applied
(with `sacremoses`, Hugging Face first rewrites some punctuation, e.g. "«" to '"'). Text spelling a special token
("</s>") is tokenized as plain text (kzoo's policy).
"""

import json
import os

import tensorflow as tf

from kzoo.text.base import Tokenizer, TokenTable
from kzoo.text.sentencepiece import model_op, read_model

LANGUAGE_CODE = r"(?s)^(>>.*?<<)(.*)$"


class MarianTokenizer(TokenTable, Tokenizer):
    """A Marian tokenizer in TensorFlow ops (source side; `target_tokenizer` gives the target side).

    Args:
        source_model, target_model: bytes of `source.spm` and `target.spm`.
        vocabulary: dict piece -> id (`vocab.json`); must hold `<unk>`, `</s>` and `<pad>`.
        side: "source" (segments with `source.spm`, reads language codes) or "target" (`target.spm`).

    `special_token_ids` holds eos (`</s>`), pad (`<pad>`, also the decoder start) and unk. `detokenize` decodes
    with the target model and drops `</s>`, `<pad>` and `<unk>` (Hugging Face's `skip_special_tokens=True`).

    Example:
        >>> tokenizer = MarianTokenizer.from_files("source.spm", "target.spm", "vocab.json")
        >>> tokenizer.encode(["Hello world"], sequence_length=8)      # ends with </s> (id 0 in OPUS-MT)
        >>> tokenizer.target_tokenizer.tokenize(["Hallo Welt"])       # target-side ids for the labels
    """

    def __init__(self, source_model, target_model, vocabulary, side="source", name=None):
        super().__init__(name=name)
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', got {side!r}.")
        missing = [token for token in ("<unk>", "</s>", "<pad>") if token not in vocabulary]
        if missing:
            raise ValueError(f"The Marian vocab.json lacks {missing}; pass the vocab.json of the checkpoint.")
        self.side = side
        self._models = (source_model, target_model)
        self.vocabulary = dict(vocabulary)
        self._tokens = {i: token for token, i in self.vocabulary.items()}
        self._size = max(self._tokens) + 1
        self._sentencepiece = {}
        for which, model in zip(("source", "target"), self._models, strict=True):
            try:
                self._sentencepiece[which] = model_op(model, tf.string)
                self._sentencepiece[which].vocab_size()
            except (tf.errors.InvalidArgumentError, tf.errors.InternalError) as error:
                raise ValueError(f"{which}.spm is not a valid SentencePiece model ({error.message.strip()}); pass "
                                 "the checkpoint's source.spm and target.spm.") from None
        pieces, ids = list(self.vocabulary), [self.vocabulary[p] for p in self.vocabulary]
        self._piece_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(pieces, tf.constant(ids, tf.int32)), self.vocabulary["<unk>"])
        names = [self._tokens.get(i, "") for i in range(self._size)]
        self._id_pieces = tf.constant(names)
        self.special_token_ids = {"eos": self.vocabulary["</s>"], "pad": self.vocabulary["<pad>"],
                                  "unk": self.vocabulary["<unk>"]}
        self.pad_id = self.special_token_ids["pad"]
        self.end_ids = (self.special_token_ids["eos"],)
        # The target side (labels): same vocabulary, target.spm, no language codes.
        self.target_tokenizer = self if side == "target" else MarianTokenizer(
            source_model, target_model, vocabulary, side="target", name=name)

    @classmethod
    def from_files(cls, source_spm, target_spm, vocab_json):
        """Loads an OPUS-MT checkpoint's `source.spm`, `target.spm` and `vocab.json`."""
        vocab_json = os.fspath(vocab_json)
        try:
            with open(vocab_json, encoding="utf-8") as file:
                vocabulary = json.load(file)
        except (OSError, ValueError) as error:
            raise ValueError(f"Marian vocabulary file {vocab_json!r} is not readable JSON ({error}); pass the "
                             "checkpoint's vocab.json.") from error
        if not isinstance(vocabulary, dict) or not all(isinstance(i, int) for i in vocabulary.values()):
            raise ValueError(f"Marian vocabulary file {vocab_json!r} is not a piece -> id object.")
        return cls(read_model(os.fspath(source_spm)), read_model(os.fspath(target_spm)), vocabulary)

    @property
    def vocabulary_size(self):
        return self._size

    def _tokenize(self, strings):
        if self.side == "source":
            has_code = tf.strings.regex_full_match(strings, LANGUAGE_CODE)
            codes = tf.strings.regex_replace(strings, LANGUAGE_CODE, r"\1")
            strings = tf.where(has_code, tf.strings.regex_replace(strings, LANGUAGE_CODE, r"\2"), strings)
        pieces = self._run(self.side, lambda sentencepiece: sentencepiece.tokenize(strings))  # (b, None) pieces
        ids = pieces.with_flat_values(self._piece_ids.lookup(pieces.flat_values))
        if self.side == "source":
            code_ids = tf.ragged.boolean_mask(self._piece_ids.lookup(codes)[:, tf.newaxis], has_code[:, tf.newaxis])
            ids = tf.concat([code_ids, ids], axis=1)
        return ids

    def _detokenize(self, ids):
        values = ids.flat_values
        special = (values == self.special_token_ids["eos"]) | (values == self.pad_id) | (
            values == self.special_token_ids["unk"])
        ids = tf.ragged.boolean_mask(ids, ids.with_flat_values(~special))
        inside = (ids.flat_values >= 0) & (ids.flat_values < self._size)
        pieces = tf.where(inside, tf.gather(self._id_pieces, tf.clip_by_value(ids.flat_values, 0, self._size - 1)),
                          "<unk>")
        return self._run("target", lambda sentencepiece: sentencepiece.detokenize(ids.with_flat_values(pieces)))

    def _run(self, side, op):
        """`op(the side's tensorflow-text SentencePiece tokenizer)`, rebuilt after `keras.backend.clear_session()`
        (see `kzoo.text.sentencepiece.SentencePieceTokenizer._run`)."""
        if not tf.executing_eagerly():
            with tf.init_scope():
                self._run(side, lambda sentencepiece: sentencepiece.vocab_size())
            return op(self._sentencepiece[side])
        try:
            return op(self._sentencepiece[side])
        except tf.errors.NotFoundError:
            model = self._models[0 if side == "source" else 1]
            self._sentencepiece[side] = model_op(model, tf.string)
            return op(self._sentencepiece[side])
