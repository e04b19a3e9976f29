"""The kzoo tokenizers: one interface (`kzoo.text.base.Tokenizer`), the vocabulary formats checkpoints ship.

| class | checkpoint files | algorithm (TensorFlow op) | `encode` adds |
|---|---|---|---|
| `WordPieceTokenizer` | vocab.txt | tensorflow-text FastWordpieceTokenizer, BERT text prep | [CLS] ... [SEP] |
| `BytePairTokenizer` | vocab.json + merges.txt, tokenizer.json | byte-level BPE (GPT-2/Qwen2/Llama-3) | bos/eos opt. |
| `RobertaTokenizer` | vocab.json + merges.txt, tokenizer.json | GPT-2's byte-level BPE | <s> ... </s> |
| `SentencePieceTokenizer` | spiece.model, tokenizer.model | tensorflow-text SentencePiece | </s> (T5), <s> (Llama-2) |
| `XLMRobertaTokenizer` | sentencepiece.bpe.model | SentencePiece, fairseq ids | <s> ... </s> |
| `MarianTokenizer` | source.spm, target.spm, vocab.json | SentencePiece, pieces numbered by vocab.json | </s> |

All give the reference tokenizers' ids, with differences kept on purpose: text spelling a special token
("[CLS]", "<|endoftext|>") stays text, and the byte-level BPE tokenizers drop NUL characters and merge a word longer
than 256 bytes in pieces (its cost stays linear; see `kzoo.text.bpe`).
"""

from kzoo.text.base import Tokenizer
from kzoo.text.bpe import BytePairTokenizer, RobertaTokenizer
from kzoo.text.files import tokenizer_from_files
from kzoo.text.marian import MarianTokenizer
from kzoo.text.sentencepiece import SentencePieceTokenizer, XLMRobertaTokenizer
from kzoo.text.wordpiece import WordPieceTokenizer

__all__ = [
    "Tokenizer",
    "WordPieceTokenizer",
    "BytePairTokenizer",
    "RobertaTokenizer",
    "MarianTokenizer",
    "SentencePieceTokenizer",
    "XLMRobertaTokenizer",
    "tokenizer_from_files",
]
