"""BERT WordPiece as TensorFlow ops: Hugging Face `BertTokenizerFast` normalization + tensorflow-text WordPiece.

Reference: Devlin et al. 2019 (BERT) and the `vocab.txt` format its checkpoints ship (one token per line, the line
number is the id). The text is prepared exactly like `tokenizers`' BertNormalizer + BertPreTokenizer:

1. turn whitespace (tab, CR, LF, Unicode separators Z*) into spaces;
2. drop NUL, U+FFFD and the other control/format/private-use characters (categories Cc, Cf, Co);
3. put spaces around CJK ideographs (BERT's ranges), so each becomes a word;
4. if strip_accents: NFD, then drop non-spacing marks (Mn);
5. if lowercase: lower-case each character on its own (no Greek final-sigma context, like Rust's char lowercase);
6. split on spaces (dropped) and punctuation (kept as one-character words): ASCII symbols and Unicode P*;
7. words longer than 100 characters become [UNK]; the rest go through `tensorflow_text.FastWordpieceTokenizer`
   (greedy longest match with "##" continuations; a word with no full match is one [UNK]).

Text that spells a special token ("[SEP]") is tokenized as plain text, never as the special token (Hugging Face
does the same only with `split_special_tokens=True`). Character classes come from TensorFlow's RE2/ICU tables;
characters newer than those tables (or than the `tokenizers` crate's) may be classified differently.
"""

import os

import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text import packing
from kzoo.text.base import Tokenizer

MAX_CHARACTERS_PER_WORD = 100
_CONTROL = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}\p{Co}]"
_WHITESPACE = r"[\t\n\r\p{Z}]"
_CJK = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
    r"\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
_SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def read_vocabulary(path, required=("[UNK]",)):
    """Reads a `vocab.txt` (one token per line); raises ValueError naming the file and the fix."""
    if not os.path.isfile(path):
        raise ValueError(f"WordPiece vocabulary file {path!r} does not exist; pass the vocab.txt of the checkpoint.")
    try:
        with open(path, encoding="utf-8") as file:
            tokens = [line.rstrip("\r\n") for line in file]
    except UnicodeDecodeError as error:
        raise ValueError(f"WordPiece vocabulary file {path!r} is not UTF-8 ({error}); pass a vocab.txt.") from error
    while tokens and not tokens[-1]:
        tokens.pop()
    if not tokens:
        raise ValueError(f"WordPiece vocabulary file {path!r} is empty; pass a vocab.txt with one token per line.")
    for token in required:
        if token not in tokens:
            raise ValueError(
                f"WordPiece vocabulary file {path!r} has no {token!r} line ({len(tokens)} tokens read); it is not a "
                "BERT vocab.txt. Pass the checkpoint's vocab.txt or train one with kzoo.text.train_wordpiece."
            )
    return tokens


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece tokenizer with `BertTokenizerFast`'s text preparation, in TensorFlow ops.

    Args:
        vocabulary: list of tokens (the index is the id); must hold "[UNK]".
        lowercase: bool, lower-case the text (uncased checkpoints).
        strip_accents: bool or None; None follows `lowercase` (uncased BERT strips accents, cased keeps them).

    Example:
        >>> tokenizer = WordPieceTokenizer.from_files("vocab.txt", lowercase=True)
        >>> tokenizer.tokenize(["Hello, world!"])          # (1, None) ragged int32, no [CLS]/[SEP]
        >>> tokenizer.encode(["Hello"], sequence_length=8)  # {"token_ids": (1, 8), "padding_mask": (1, 8)}
    """

    def __init__(self, vocabulary, lowercase=True, strip_accents=None, name=None):
        super().__init__(name=name)
        self.vocabulary = list(vocabulary)
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self._ids = {token: i for i, token in enumerate(self.vocabulary)}
        if "[UNK]" not in self._ids:
            raise ValueError("The WordPiece vocabulary has no '[UNK]' token; BERT vocabularies always do.")
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            max_bytes_per_word=4 * MAX_CHARACTERS_PER_WORD + 4,  # the 100-character limit is applied before
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            no_pretokenization=True,
            support_detokenization=True,
        )
        self.special_token_ids = {
            kind: self._ids[token] for kind, token in _SPECIAL_TOKENS.items() if token in self._ids
        }
        self.pad_id = self.special_token_ids.get("pad", 0)
        if "cls" in self.special_token_ids and "sep" in self.special_token_ids:
            self.start_ids = (self.special_token_ids["cls"],)
            self.end_ids = (self.special_token_ids["sep"],)

    @classmethod
    def from_files(cls, vocab_txt, lowercase=True, strip_accents=None):
        """Loads a BERT `vocab.txt`; `lowercase`/`strip_accents` as the checkpoint's tokenizer_config.json says."""
        return cls(read_vocabulary(os.fspath(vocab_txt)), lowercase=lowercase, strip_accents=strip_accents)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def id_to_token(self, id):
        if not 0 <= int(id) < len(self.vocabulary):
            raise ValueError(f"id {id} is outside the vocabulary [0, {len(self.vocabulary) - 1}].")
        return self.vocabulary[int(id)]

    def token_to_id(self, token):
        if token not in self._ids:
            raise ValueError(f"token {token!r} is not in the vocabulary.")
        return self._ids[token]

    def pretokenize(self, strings):
        """(b,) valid UTF-8 strings -> (b, None) ragged words, prepared as described in the module docstring."""
        text = tf.strings.regex_replace(strings, _WHITESPACE, " ")  # first: tab, CR, LF are also Cc
        text = tf.strings.regex_replace(text, _CONTROL, "")
        text = tf.strings.regex_replace(text, _CJK, r" \0 ")
        if self.strip_accents:
            text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
        if self.lowercase:
            characters = tf.strings.unicode_split(text, "UTF-8")  # (b, None) one character each
            text = tf.strings.reduce_join(tf.strings.lower(characters, encoding="utf-8"), axis=-1)
        words = tf_text.regex_split(text, r" |" + _PUNCTUATION, _PUNCTUATION)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARACTERS_PER_WORD
        return words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))

    def _tokenize(self, strings):
        return self._wordpiece.tokenize(self.pretokenize(strings)).merge_dims(-2, -1)

    def _detokenize(self, ids):
        # Words joined by spaces, "##" pieces glued on; then, like Hugging Face's WordPiece decoder (cleanup=True),
        # no space before the tokens ".", "?", "!" and ",". Lossy: case, accents and spacing are not restored.
        text = self._wordpiece.detokenize(ids)
        return tf.strings.regex_replace(text, r" ([.?!,])", r"\1")

    def encode_pair(self, strings_a, strings_b, sequence_length=None, *, max_length=None):
        """Two texts -> `[CLS] a [SEP] b [SEP]` model inputs (BERT sentence pairs).

        Truncation is Hugging Face's "longest_first" (see `kzoo.text.packing`); padding at the end.

        Args:
            strings_a, strings_b: (b,) texts (str lists or `tf.string` tensors) of the same batch size.
            sequence_length: int, the length of every output row (> 3).
            max_length: the old name of `sequence_length` (deprecated).

        Returns:
            dict with "token_ids" (b, sequence_length) int32, "segment_ids" (b, sequence_length) int32 (0 for
            [CLS] a [SEP], 1 for b [SEP], 0 on padding) and "padding_mask" (b, sequence_length) bool.
        """
        sequence_length = packing.renamed_length(sequence_length, max_length, "encode_pair")
        if not self.start_ids:
            raise ValueError("encode_pair needs [CLS] and [SEP] in the vocabulary.")
        packing.check_budget(sequence_length, 3)
        a, b = self._tokenize_batch(strings_a), self._tokenize_batch(strings_b)
        return packing.pack(a, b, sequence_length=sequence_length, start_ids=self.start_ids, end_ids=self.end_ids,
                            pad_id=self.pad_id)
