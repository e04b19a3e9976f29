"""The kzoo tokenizers: one interface (`kzoo.text.base.Tokenizer`), three vocabulary formats.

| class | checkpoint files | algorithm (TensorFlow op) | `encode` adds |
|---|---|---|---|
| `WordPieceTokenizer` | vocab.txt | tensorflow-text FastWordpieceTokenizer, BERT text prep | [CLS] ... [SEP] |
| `BytePairTokenizer` | vocab.json, merges.txt | keras-hub BytePairTokenizer (GPT-2) | nothing (bos/eos optional) |
| `SentencePieceTokenizer` | spiece.model | tensorflow-text SentencepieceTokenizer | </s> |
"""

from kzoo.text.base import Tokenizer
from kzoo.text.bpe import BytePairTokenizer
from kzoo.text.files import tokenizer_from_files
from kzoo.text.sentencepiece import SentencePieceTokenizer
from kzoo.text.wordpiece import WordPieceTokenizer

__all__ = ["Tokenizer", "WordPieceTokenizer", "BytePairTokenizer", "SentencePieceTokenizer", "tokenizer_from_files"]
