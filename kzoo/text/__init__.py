"""Tokenizers as TensorFlow ops that load the vocabulary files famous checkpoints ship, and vocabulary training.

See `kzoo.text.tokenizers` for the classes and `kzoo.text.vocabulary` for training your own vocabulary.
"""

from kzoo.text.tokenizers import (
    BytePairTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordPieceTokenizer,
    tokenizer_from_files,
)
from kzoo.text.vocabulary import train_sentencepiece, train_wordpiece

__all__ = [
    "Tokenizer",
    "WordPieceTokenizer",
    "BytePairTokenizer",
    "SentencePieceTokenizer",
    "tokenizer_from_files",
    "train_wordpiece",
    "train_sentencepiece",
]
