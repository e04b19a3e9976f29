"""The interface the kzoo tokenizers share, and the packing (`encode`) they all use.

Every tokenizer is a `tf.Module` built from TensorFlow / tensorflow-text ops, so `tokenize` runs eagerly, inside a
`tf.function` with a `tf.TensorSpec([None], tf.string)` input, in `tf.data`, and can be saved in a SavedModel.

Input text: a Python `str`/`bytes`, a list of them, a NumPy string array or a `tf.string` tensor, scalar or 1-D.
Invalid UTF-8 bytes are REPLACED by U+FFFD before tokenizing (never an error); WordPiece then drops U+FFFD like
BERT's text cleaning, byte-level BPE and SentencePiece encode it as the replacement character.

Packing policy of `encode` (all tokenizers; `kzoo.text.packing.pack`, the packer the data pipelines and exports
share): the text's tokens are truncated AT THE END to leave room for the special tokens, the special tokens are
added (WordPiece `[CLS] ... [SEP]`, RoBERTa / XLM-R `<s> ... </s>`, byte-level BPE optional bos/eos, T5 and
Marian `... </s>`, Llama `<s> ...`), and the row is padded AT THE END with the pad id up to `sequence_length`.
`padding_mask` is True on real tokens (special tokens included) and False on padding.
"""

import numpy as np
import tensorflow as tf

from kzoo.text import packing


def to_string_tensor(strings):
    """Converts text input to a `tf.string` tensor of rank 0 or 1 with valid UTF-8.

    Raises:
        TypeError: the input is not text (numbers, None, a non-string tensor) or has rank > 1.
    """
    if isinstance(strings, str):
        strings = strings.encode("utf-8", "surrogatepass")
    elif isinstance(strings, (list, tuple)):
        if not all(isinstance(s, (str, bytes)) for s in strings):
            kinds = sorted({type(s).__name__ for s in strings if not isinstance(s, (str, bytes))})
            raise TypeError(f"tokenizers take text: a list of str/bytes, got a list holding {', '.join(kinds)}.")
        # tf.string explicitly: an empty list is an empty batch, not a float32 tensor.
        strings = tf.constant([s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s for s in strings],
                              tf.string, shape=[len(strings)])
    elif isinstance(strings, np.ndarray) and strings.dtype.kind == "U":
        strings = np.char.encode(strings, "utf-8", "surrogatepass")  # lone surrogates are replaced as in a str
    if isinstance(strings, (tf.Tensor, tf.Variable)) or tf.is_tensor(strings):
        tensor = strings
    else:
        try:
            tensor = tf.convert_to_tensor(strings)
        except (TypeError, ValueError) as error:
            kind = type(strings).__name__
            raise TypeError(f"tokenizers take text (str, bytes or a list of them), got {kind}.") from error
    if isinstance(tensor, tf.RaggedTensor) or tensor.dtype != tf.string:
        raise TypeError(
            f"tokenizers take text: a tf.string tensor, str or list of str; got a {tensor.dtype.name} tensor. "
            "To turn ids back into text, call detokenize."
        )
    if tensor.shape.rank is not None and tensor.shape.rank > 1:
        raise TypeError(f"tokenizers take a scalar or a 1-D batch of strings, got shape {tensor.shape}.")
    return tf.strings.unicode_transcode(tensor, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)


def to_ragged_ids(ids):
    """Converts token ids (list, list of lists, array, dense or ragged tensor) to int32; returns (ids, unbatched)."""
    if isinstance(ids, tf.RaggedTensor):
        return tf.cast(ids, tf.int32), False
    if not tf.is_tensor(ids):
        if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray)):
            return tf.ragged.constant([list(row) for row in ids], dtype=tf.int32), False
        ids = tf.convert_to_tensor(ids, dtype_hint=tf.int32)  # [] is a sequence of no ids, not a float32 tensor
    if not ids.dtype.is_integer:
        raise TypeError(f"detokenize takes integer token ids, got a {ids.dtype.name} tensor.")
    ids = tf.cast(ids, tf.int32)
    if ids.shape.rank == 1:
        return tf.RaggedTensor.from_tensor(ids[tf.newaxis]), True
    return tf.RaggedTensor.from_tensor(ids), False


class Tokenizer(tf.Module):
    """Base of the kzoo tokenizers: text <-> int32 ids with TensorFlow ops.

    Attributes:
        start_ids: tuple of int, the special-token ids `encode` puts before a text (WordPiece `([CLS],)`, GPT-2
            `(<|endoftext|>,)` with `add_bos`, else `()`); a GPT prompt starts with them too.
        end_ids: tuple of int, the special-token ids `encode` puts after a text (WordPiece `([SEP],)`,
            SentencePiece `(</s>,)`, else `()`).
        pad_id: int, the id `encode` pads rows with.
        special_token_ids: dict kind -> id of the special tokens the vocabulary has.
        pair_start_ids: tuple of int, the ids `encode_pair` puts before the second text (RoBERTa `(</s>,)`, so a
            pair reads `<s> A </s></s> B </s>`; else `()`).
        pair_segment_ids: bool, `encode_pair` gives the second text segment id 1 (False for RoBERTa-style models,
            which have one segment).
        word_prefix: str, put before each word that is tokenized on its own (the word-level pipelines: NER tags,
            SQuAD offsets, the exported `tag` / `answer` signatures). Byte-level BPE encodes a word's leading space
            in its first token (`Ġword`), so " " there, as Hugging Face's `add_prefix_space=True` does for split
            words; "" for WordPiece and SentencePiece, which tokenize a lone word as they do inside a text.

    Subclasses implement `_tokenize(strings)` ((b,) valid UTF-8 `tf.string` -> (b, None) ragged int32),
    `_detokenize(ids)` ((b, None) ragged int32 -> (b,) `tf.string`), `vocabulary_size`, `id_to_token`,
    `token_to_id`, and set the attributes above.
    """

    start_ids = ()
    end_ids = ()
    pair_start_ids = ()  # ids before a pair's second text, after the first text's end ids (RoBERTa: </s>)
    pair_segment_ids = True  # encode_pair marks the second text with segment 1 (False: one segment, all 0)
    pad_id = 0
    word_prefix = ""  # before each word tokenized on its own (byte-level BPE: " ", its words carry their space)
    special_token_ids = {}  # kind ("pad", "unk", "cls", "sep", "mask", "bos", "eos") -> id, where the vocabulary has it

    @property
    def vocabulary_size(self):
        """int, the number of ids."""
        raise NotImplementedError

    def id_to_token(self, id):
        """The token string of `id`; ValueError outside the vocabulary."""
        raise NotImplementedError

    def token_to_id(self, token):
        """The id of the token string `token`; ValueError if it is not in the vocabulary."""
        raise NotImplementedError

    def _tokenize(self, strings):
        raise NotImplementedError

    def _detokenize(self, ids):
        raise NotImplementedError

    def tokenize(self, strings):
        """Text -> token ids, without special tokens.

        Args:
            strings: str, bytes, a list of them, or a `tf.string` tensor; shape () or (b,).

        Returns:
            int32 ids: a (b, None) `tf.RaggedTensor` for a batch (or a tensor of unknown rank), a (n,) `tf.Tensor`
            for a scalar input.

        Raises:
            TypeError: the input is not text.
        """
        strings = to_string_tensor(strings)
        if strings.shape.rank == 0:
            return self._tokenize(strings[tf.newaxis])[0]
        return self._tokenize(strings)

    def detokenize(self, ids):
        """Token ids -> text.

        Args:
            ids: int ids, (n,) or (b, n) dense, or (b, None) ragged (lists and arrays are accepted).

        Returns:
            `tf.string` tensor: shape () for (n,) ids, (b,) for a batch. Special tokens are kept as text.
        """
        ids, unbatched = to_ragged_ids(ids)
        text = self._detokenize(ids)
        return text[0] if unbatched else text

    def __call__(self, strings):
        return self.tokenize(strings)

    def encode(self, strings, sequence_length=None, add_special_tokens=True, *, max_length=None):
        """Text -> fixed-length model inputs (see the module docstring for the truncation/padding policy).

        Args:
            strings: str or list of str / (b,) `tf.string` tensor (a scalar is treated as a batch of one).
            sequence_length: int, the length of every output row.
            add_special_tokens: bool, add the family's special tokens around the text.
            max_length: the old name of `sequence_length` (deprecated).

        Returns:
            dict with "token_ids" (b, sequence_length) int32 and "padding_mask" (b, sequence_length) bool.
        """
        sequence_length = packing.renamed_length(sequence_length, max_length, "encode")
        prefix, suffix = (self.start_ids, self.end_ids) if add_special_tokens else ((), ())
        packing.check_budget(sequence_length, len(prefix) + len(suffix))  # before tokenizing: a clear error first
        tokens = self._tokenize_batch(strings)
        return packing.pack(tokens, sequence_length=sequence_length, start_ids=prefix, end_ids=suffix,
                            pad_id=self.pad_id)

    def _encode_pair(self, strings_a, strings_b, sequence_length, max_length):
        """`start a end pair_start b end` rows, "longest_first" truncation (see `kzoo.text.packing.pack`)."""
        sequence_length = packing.renamed_length(sequence_length, max_length, "encode_pair")
        if not self.start_ids or not self.end_ids:
            raise ValueError("encode_pair needs the tokenizer's start and end special tokens.")
        packing.check_budget(sequence_length, len(self.start_ids) + 2 * len(self.end_ids) + len(self.pair_start_ids))
        a, b = self._tokenize_batch(strings_a), self._tokenize_batch(strings_b)
        packed = packing.pack(a, b, sequence_length=sequence_length, start_ids=self.start_ids, end_ids=self.end_ids,
                              pad_id=self.pad_id, pair_start_ids=self.pair_start_ids)
        if not self.pair_segment_ids:
            packed["segment_ids"] = tf.zeros_like(packed["segment_ids"])
        return packed

    def _tokenize_batch(self, strings):
        strings = to_string_tensor(strings)
        if strings.shape.rank == 0:
            strings = strings[tf.newaxis]
        return self._tokenize(strings)

    def _special_id(self, token):
        """The id of `token` if the vocabulary has it, else None."""
        try:
            return self.token_to_id(token)
        except ValueError:
            return None


class TokenTable:
    """`id_to_token` / `token_to_id` of a tokenizer whose vocabulary is a dict: `self.vocabulary` (token -> id) and
    `self._tokens` (id -> token). Mixed in before `Tokenizer` by the byte-level BPE, Metaspace BPE and Marian
    tokenizers."""

    def id_to_token(self, id):
        if int(id) not in self._tokens:
            raise ValueError(f"id {id} is not in the vocabulary (size {self.vocabulary_size}).")
        return self._tokens[int(id)]

    def token_to_id(self, token):
        if token not in self.vocabulary:
            raise ValueError(f"token {token!r} is not in the vocabulary.")
        return self.vocabulary[token]
