"""The kzoo tokenizers: one interface (`kzoo.text.base.Tokenizer`), three vocabulary formats.

| class | checkpoint files | algorithm (TensorFlow op) | `encode` adds |
|---|---|---|---|
| `WordPieceTokenizer` | vocab.txt | tensorflow-text FastWordpieceTokenizer, BERT text prep | [CLS] ... [SEP] |
| `BytePairTokenizer` | vocab.json, merges.txt | keras-hub GPT-2 BPE, long words cut | nothing (bos/eos optional) |
| `SentencePieceTokenizer` | spiece.model | tensorflow-text SentencepieceTokenizer | </s> |

All three give the reference tokenizers' ids, with differences kept on purpose: text spelling a special token
("[CLS]", "<|endoftext|>") stays text, and the GPT-2 tokenizer drops NUL characters and merges a word longer than
256 bytes in pieces (its cost stays linear; see `kzoo.text.bpe`).
"""

from kzoo.text.base import Tokenizer
from kzoo.text.bpe import BytePairTokenizer
from kzoo.text.files import tokenizer_from_files
from kzoo.text.sentencepiece import SentencePieceTokenizer
from kzoo.text.wordpiece import WordPieceTokenizer

__all__ = ["Tokenizer", "WordPieceTokenizer", "BytePairTokenizer", "SentencePieceTokenizer", "tokenizer_from_files"]
