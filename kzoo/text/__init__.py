"""Tokenizers as TensorFlow ops that load the vocabulary files famous checkpoints ship, and vocabulary training.

See `kzoo.text.tokenizers` for the classes, `kzoo.text.vocabulary` for training your own vocabulary and
`kzoo.text.lines` for the rule every text-file reader applies (lines that are not UTF-8 text are skipped and counted).
"""

from kzoo.text.tokenizers import (
    BytePairTokenizer,
    MarianTokenizer,
    RobertaTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordPieceTokenizer,
    XLMRobertaTokenizer,
    tokenizer_from_files,
)
from kzoo.text.vocabulary import train_sentencepiece, train_wordpiece

__all__ = [
    "Tokenizer",
    "WordPieceTokenizer",
    "BytePairTokenizer",
    "RobertaTokenizer",
    "MarianTokenizer",
    "SentencePieceTokenizer",
    "XLMRobertaTokenizer",
    "tokenizer_from_files",
    "train_wordpiece",
    "train_sentencepiece",
]
