"""Byte-level BPE (GPT-2, RoBERTa, Qwen2, Llama-3) as TensorFlow ops, on keras-hub's BPE merge loop.

Reference: Radford et al. 2019 (GPT-2) and its two files: `vocab.json` (token -> id, tokens written in GPT-2's
byte-to-unicode alphabet) and `merges.txt` (one "a b" merge per line in priority order, optional "#version" header);
the same model inside a Hugging Face `tokenizer.json` (see `kzoo.text.hf_json`).

Words are cut by `kzoo.text.pretokenizers` (the GPT-2, Qwen2 or Llama-3 regex, reproduced in RE2 without
lookahead), then keras-hub's merge loop (`keras_hub.tokenizers.BytePairTokenizer`, forced onto its TensorFlow path)
merges each word's bytes, so the same graph runs eagerly, in `tf.function`, `tf.data` and a SavedModel. Text
spelling a special token ("<|endoftext|>", "<s>") is tokenized as plain text, like `GPT2TokenizerFast(...,
split_special_tokens=True)`.

Known differences from the reference:

* NUL characters (U+0000) are removed before tokenizing (see `_tokenize_impl`).
* A pre-split word longer than `MAX_WORD_BYTES` (256) UTF-8 bytes is cut into pieces of 256 bytes and each
  piece is merged on its own (byte-level BPE merges bytes, so a cut may fall inside a character). keras-hub
  applies one merge per `tf.while_loop` step over the whole word, so a word of n bytes costs O(n^2) ("a" * 8,000
  took 21 s, * 100,000 did not finish in 10 minutes: one request could stall a server); cut, it costs
  O(n * 256). Words up to the limit (every word of natural text: GPT-2's longest tokens have 128 bytes) get
  exactly GPT-2's tokens; a longer word gets its bytes back from `detokenize`, but may use other tokens than
  GPT-2 around each cut.
* The pre-split is kzoo's (`kzoo.text.pretokenizers`), not keras-hub's: keras-hub's GPT-2 split differs from
  GPT-2's on whitespace runs ("\r\n", trailing spaces, "\n\n\n") and drops the character "६" it uses as a marker.
* keras-hub's per-tokenizer cache of seen words (a hash table that grows with every new word, without limit, in a
  server) is not used: each call merges its own words.
"""

import copy
import json
import os

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text import pretokenizers
from kzoo.text.base import Tokenizer, TokenTable

END_OF_TEXT = "<|endoftext|>"
GPT2_SPECIAL_TOKENS = {"bos": END_OF_TEXT, "eos": END_OF_TEXT}
ROBERTA_SPECIAL_TOKENS = {
    "bos": "<s>", "cls": "<s>", "eos": "</s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"
}
MAX_WORD_BYTES = 256  # longer pre-split words are merged in pieces of this many bytes (see the module docstring)


def read_vocabulary(path):
    """Reads a GPT-2 `vocab.json`; raises ValueError naming the file and the fix."""
    if not os.path.isfile(path):
        raise ValueError(f"BPE vocabulary file {path!r} does not exist; pass the vocab.json of the checkpoint.")
    try:
        with open(path, encoding="utf-8") as file:
            vocabulary = json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f'BPE vocabulary file {path!r} is not valid JSON ({error}); pass a GPT-2 vocab.json ({{"token": id, ...}}).'
        ) from error
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise ValueError(f"BPE vocabulary file {path!r} is empty or not a token -> id object; pass a GPT-2 vocab.json.")
    if not all(isinstance(i, int) for i in vocabulary.values()):
        raise ValueError(f"BPE vocabulary file {path!r} maps tokens to non-integers; pass a GPT-2 vocab.json.")
    return vocabulary


def read_merges(path, vocabulary):
    """Reads a GPT-2 `merges.txt` (skipping the "#version" header); checks every merge against the vocabulary."""
    if not os.path.isfile(path):
        raise ValueError(f"BPE merges file {path!r} does not exist; pass the merges.txt that goes with vocab.json.")
    with open(path, encoding="utf-8") as file:
        lines = [line.rstrip("\r\n") for line in file]
    merges = [line for line in lines if line and not line.startswith("#version")]
    if not merges:
        raise ValueError(f"BPE merges file {path!r} holds no merges; pass the merges.txt that goes with vocab.json.")
    for number, merge in enumerate(merges, 1):
        parts = merge.split(" ")
        if len(parts) != 2 or parts[0] not in vocabulary or parts[1] not in vocabulary:
            raise ValueError(
                f"BPE merges file {path!r}: merge {number} {merge!r} is not two vocabulary tokens separated by one "
                "space; the merges.txt does not match vocab.json (pass the pair saved together)."
            )
    return merges


class _Graphs:
    """Holds the traced functions out of SavedModel tracking: they are called from the exporter's own
    functions (and inlined there), never saved as endpoints of their own."""

    def __init__(self, tokenize, detokenize):
        self.tokenize, self.detokenize = tokenize, detokenize


class BytePairTokenizer(TokenTable, Tokenizer):
    """GPT-2's byte-level BPE tokenizer in TensorFlow ops.

    Args:
        vocabulary: dict token -> id (GPT-2 byte-to-unicode alphabet).
        merges: list of "a b" merge rules, highest priority first.
        add_bos: bool, `encode` starts each row with `<|endoftext|>` (GPT-2 uses it as bos).
        add_eos: bool, `encode` ends each row with `<|endoftext|>`.
        pretokenizer: "gpt2", "qwen2" or "llama3", the regex that cuts words (`kzoo.text.pretokenizers`).
        special_tokens: dict kind ("bos", "eos", "pad", ...) -> token; default GPT-2's (`<|endoftext|>` for bos
            and eos). Kinds whose token is not in the vocabulary are left out of `special_token_ids`.
        normalization: None or "NFC"/"NFKC"/"NFD"/"NFKD", applied to the text first (Qwen2: NFC).
        ignore_merges: bool, a word that is itself a token is taken whole, without merging (Llama-3).

    GPT-2 has no padding token: `encode` pads with `<|endoftext|>` (or 0 if the vocabulary lacks it) and the
    `padding_mask` tells padding apart.

    Example:
        >>> tokenizer = BytePairTokenizer.from_files("vocab.json", "merges.txt")
        >>> tokenizer.tokenize(["Hello world"])             # (1, None) ragged int32
        >>> tokenizer.detokenize([[15496, 995]])            # (1,) tf.string: b"Hello world"
    """

    word_prefix = " "  # a word inside a text is encoded with its leading space: `Ġword`

    def __init__(self, vocabulary, merges, add_bos=False, add_eos=False, name=None, pretokenizer="gpt2",
                 special_tokens=None, normalization=None, ignore_merges=False):
        super().__init__(name=name)
        if normalization not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(f"normalization must be None, NFC, NFKC, NFD or NFKD, got {normalization!r}.")
        self.normalization, self.ignore_merges = normalization, bool(ignore_merges)
        if pretokenizer not in pretokenizers.NAMES:
            raise ValueError(f"pretokenizer must be one of {sorted(pretokenizers.NAMES)}, got {pretokenizer!r}.")
        self.pretokenizer = pretokenizer
        self.vocabulary = dict(vocabulary)
        self._tokens = {i: token for token, i in self.vocabulary.items()}
        self._bpe = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=self.vocabulary, merges=list(merges), unsplittable_tokens=[], _allow_python_workflow=False
        )
        # keras-hub converts eager outputs to backend tensors (ragged ones padded); inside a graph it returns the
        # TensorFlow values untouched, so both directions always run as graphs. Tracing keras-hub's BPE takes
        # seconds, so the graphs are built once and shared by `with_special_tokens` copies. keras-hub writes its
        # control flow with tf.cond/tf.while_loop, so AutoGraph (most of the tracing time) is switched off.
        # keras-hub's lookup tables, listed so that a SavedModel reaches them under every Keras backend (a Keras
        # layer is a TensorFlow trackable only under the TensorFlow backend).
        self._tables = [
            getattr(self._bpe, name)
            for name in ("byte2unicode", "unicode2byte", "token_to_id_map", "id_to_token_map", "merge_ranks", "cache")
        ]
        self._graphs = _Graphs(
            tokenize=tf.function(
                self._tokenize_impl, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
            ),
            detokenize=tf.function(
                self._bpe.detokenize,
                input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)],
                autograph=False,
            ),
        )
        self.special_tokens = dict(GPT2_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        found = {kind: self._special_id(token) for kind, token in self.special_tokens.items()}
        self.special_token_ids = {kind: i for kind, i in found.items() if i is not None}
        self.pad_id = self.special_token_ids.get("pad", self.special_token_ids.get("eos", 0))
        self._set_framing(add_bos, add_eos)

    def _set_framing(self, add_bos, add_eos):
        for wanted, kind in ((add_bos, "bos"), (add_eos, "eos")):
            if wanted and kind not in self.special_token_ids:
                token = self.special_tokens.get(kind)
                raise ValueError(f"add_{kind}=True needs the {kind} token {token!r} in the vocabulary.")
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.start_ids = (self.special_token_ids["bos"],) if add_bos else ()
        self.end_ids = (self.special_token_ids["eos"],) if add_eos else ()

    def with_special_tokens(self, add_bos=False, add_eos=False):
        """A copy that `encode`s with other bos/eos framing; it shares this tokenizer's vocabulary and graphs."""
        other = copy.copy(self)
        other._set_framing(add_bos, add_eos)
        return other

    @classmethod
    def from_files(cls, vocab_json, merges_txt, add_bos=False, add_eos=False):
        """Loads GPT-2's `vocab.json` and `merges.txt`."""
        vocabulary = read_vocabulary(os.fspath(vocab_json))
        return cls(vocabulary, read_merges(os.fspath(merges_txt), vocabulary), add_bos=add_bos, add_eos=add_eos)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def _tokenize(self, strings):
        return self._graphs.tokenize(strings)

    def _tokenize_impl(self, strings):
        """(b,) valid UTF-8 -> (b, None) ragged int32: the pre-split, long words cut, byte-level merges.

        keras-hub's own `tokenize` does the same steps with a growing cache, no word-length bound and a GPT-2 split
        that differs from GPT-2's on whitespace runs; its byte -> unicode table and merge loop are reused, so that
        every word up to `MAX_WORD_BYTES` gets the reference tokens.
        """
        # tensorflow-text's regex_split (used by the pre-split) silently drops everything after a NUL
        # character; dropping the NUL characters alone keeps the rest of the text (GPT-2 would encode NUL as "Ā").
        strings = tf.strings.regex_replace(strings, r"\x00", "")
        if self.normalization:
            strings = tf_text.normalize_utf8(strings, self.normalization)
        words = pretokenizers.split_words(strings, self.pretokenizer)  # (b, W) ragged string
        pieces = cut_words(words.flat_values, MAX_WORD_BYTES)  # (words, P) ragged string
        symbols = self._bpe.byte2unicode.lookup(tf.strings.bytes_split(pieces.flat_values))  # (pieces, bytes)
        merged = self._bpe._bpe_merge_tf(symbols)  # (pieces, tokens) ragged string
        ids = tf.cast(self._bpe.token_to_id_map.lookup(merged.flat_values), tf.int32)
        piece_tokens = merged.with_flat_values(ids)  # (pieces, tokens)
        if self.ignore_merges:  # a piece that is a token is that token, whatever the merges would make of it
            whole = tf.cast(self._bpe.token_to_id_map.lookup(tf.strings.reduce_join(symbols, axis=1)), tf.int32)
            found = whole >= 0  # (pieces,)
            keep = piece_tokens.with_flat_values(tf.repeat(~found, piece_tokens.row_lengths()))
            merged_only = tf.ragged.boolean_mask(piece_tokens, keep)
            piece_tokens = tf.concat([merged_only, tf.ragged.boolean_mask(whole[:, None], found[:, None])], axis=1)
        word_tokens = tf.RaggedTensor.from_row_splits(piece_tokens, pieces.row_splits).merge_dims(1, 2)
        return tf.RaggedTensor.from_row_splits(word_tokens, words.row_splits).merge_dims(1, 2)  # (b, tokens)

    def _detokenize(self, ids):
        return self._graphs.detokenize(ids)


class RobertaTokenizer(BytePairTokenizer):
    """RoBERTa's byte-level BPE (GPT-2's algorithm and split) with RoBERTa's special tokens and framing.

    Args:
        vocabulary, merges: as `BytePairTokenizer` (RoBERTa's `vocab.json` / `merges.txt`).
        special_tokens: dict kind -> token, default `ROBERTA_SPECIAL_TOKENS`: `<s>` is bos and cls, `</s>` eos and
            sep, `<pad>` pad (id 1 in RoBERTa), `<unk>`, `<mask>`; so `special_token_ids` fills the roles kzoo's BERT
            pipelines and tasks read ("cls", "sep", "pad", "mask").

    `encode` gives `<s> A </s>`, `encode_pair` `<s> A </s></s> B </s>` (RoBERTa has one segment: `segment_ids` are
    all 0), both padded with `<pad>`.
    """

    def __init__(self, vocabulary, merges, name=None, special_tokens=None):
        special_tokens = dict(ROBERTA_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        super().__init__(vocabulary, merges, name=name, special_tokens=special_tokens)
        missing = [kind for kind in ("cls", "sep", "pad") if kind not in self.special_token_ids]
        if missing:
            tokens = [special_tokens.get(kind) for kind in missing]
            raise ValueError(f"A RoBERTa vocabulary needs the tokens {tokens} ({', '.join(missing)}); the vocab.json "
                             "lacks them. Pass RoBERTa's vocab.json, or load a GPT-2 vocabulary with "
                             "BytePairTokenizer.")
        self.start_ids = (self.special_token_ids["cls"],)
        self.end_ids = (self.special_token_ids["sep"],)
        self.pair_start_ids = (self.special_token_ids["sep"],)
        self.pair_segment_ids = False

    def _set_framing(self, add_bos, add_eos):
        self.add_bos, self.add_eos = True, True  # RoBERTa always frames; __init__ sets the ids

    def with_special_tokens(self, add_bos=False, add_eos=False):
        raise TypeError("RoBERTa always adds <s> and </s>; call tokenize for ids without them.")

    @classmethod
    def from_files(cls, vocab_json, merges_txt, special_tokens=None):
        """Loads RoBERTa's `vocab.json` and `merges.txt`."""
        vocabulary = read_vocabulary(os.fspath(vocab_json))
        return cls(vocabulary, read_merges(os.fspath(merges_txt), vocabulary), special_tokens=special_tokens)

    def encode_pair(self, strings_a, strings_b, sequence_length=None, *, max_length=None):
        """Two texts -> `<s> a </s></s> b </s>` rows; see `Tokenizer.encode_pair`."""
        return self._encode_pair(strings_a, strings_b, sequence_length, max_length)


def cut_words(words, limit):
    """Each word cut into pieces of at most `limit` bytes, in order.

    Args:
        words: (n,) `tf.string`.
        limit: int, the most bytes in one piece.

    Returns:
        (n, None) ragged `tf.string`: the word itself if it has 1 to `limit` bytes, no piece for "", else
        ceil(bytes / limit) pieces.
    """
    lengths = tf.strings.length(words)  # (n,) bytes
    starts = tf.ragged.range(tf.zeros_like(lengths), lengths, limit)  # (n, P) first byte of each piece
    sources = tf.repeat(words, starts.row_lengths())
    sizes = tf.fill(tf.shape(starts.flat_values), limit)
    return starts.with_flat_values(tf.strings.substr(sources, starts.flat_values, sizes))
