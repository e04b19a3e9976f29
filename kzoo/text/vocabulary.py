"""Train a vocabulary on your own corpus: WordPiece (`vocab.txt`, BERT) or SentencePiece (`spiece.model`, T5).

The files written here are the ones famous checkpoints ship, so `kzoo.text.tokenizer_from_files` (and the
Hugging Face or sentencepiece reference tokenizers) load them unchanged.

WordPiece uses the Hugging Face `tokenizers` trainer with BERT's normalizer and pre-tokenizer, so the vocabulary
is learned on exactly the words `WordPieceTokenizer` produces. SentencePiece uses the `sentencepiece` trainer.
Both libraries train offline; nothing is downloaded.

The corpus is read line by line as `kzoo.data` reads text (`kzoo.text.lines.text_file_lines`): a line that is not
UTF-8 text is skipped and counted (pass a `CorpusReport` to see the counts), a file that is mostly not UTF-8 text
(an image, latin-1) is refused naming it. The trainers see every line whatever its length: sentencepiece skips
lines longer than `max_sentence_length` bytes, so such a line (a whole document on one line) is given to it in
pieces cut at spaces.
"""

import dataclasses
import os

from kzoo.text.lines import LineReport, text_file_lines

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
T5_PAD_ID, T5_EOS_ID, T5_UNK_ID = 0, 1, 2


def _check_corpus(files):
    """Returns the corpus as a list of absolute paths; raises ValueError if any file is missing or all are empty."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [os.path.abspath(os.fspath(f)) for f in files]
    if not files:
        raise ValueError("No corpus files given; pass one or more UTF-8 text files (a sentence or document a line).")
    for path in files:
        if not os.path.isfile(path):
            raise ValueError(f"Corpus file {path!r} does not exist; pass existing UTF-8 text files.")
    if all(not _has_text(path) for path in files):
        raise ValueError(
            f"The corpus {files} holds no text (only empty or whitespace lines); add text to train a vocabulary on."
        )
    return files


def _has_text(path):
    with open(path, encoding="utf-8", errors="replace") as file:
        return any(line.strip() for line in file)


@dataclasses.dataclass
class CorpusReport:
    """What a vocabulary trainer read: `lines` given to it, `split_lines` cut into pieces, and the files' skips."""

    lines: int = 0
    split_lines: int = 0
    read: LineReport = None  # lines that are not UTF-8 text, per file

    def messages(self):
        out = list(self.read.messages()) if self.read is not None else []
        if self.split_lines:
            out.append(f"cut {self.split_lines} lines longer than the trainer takes into pieces at spaces")
        return out


def _corpus_lines(files, report, max_bytes=None):
    """Yields the non-empty UTF-8 lines of `files`; lines over `max_bytes` come in pieces of at most that size."""
    report.read = report.read or LineReport()
    for path in files:
        for line in text_file_lines(path, report.read):
            if not line.strip():
                continue
            pieces = _pieces(line, max_bytes) if max_bytes and len(line.encode("utf-8")) > max_bytes else [line]
            report.split_lines += len(pieces) > 1
            report.lines += len(pieces)
            yield from pieces


def _pieces(line, max_bytes):
    """`line` cut into pieces of at most `max_bytes` UTF-8 bytes, at spaces (inside a word only if it is longer)."""
    pieces, current, size = [], [], 0
    for word in line.split():
        length = len(word.encode("utf-8"))
        if current and (size + 1 + length > max_bytes):
            pieces.append(" ".join(current))
            current, size = [], 0
        while length > max_bytes:  # a "word" longer than a piece: cut it at a character boundary
            head = word.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
            pieces.append(head)
            word = word[len(head):]
            length = len(word.encode("utf-8"))
        if word:
            size += length + (1 if current else 0)
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _check_size(vocabulary_size, minimum):
    if not isinstance(vocabulary_size, int) or vocabulary_size < minimum:
        raise ValueError(f"vocabulary_size must be an integer >= {minimum}, got {vocabulary_size!r}.")


def train_wordpiece(
    files,
    vocabulary_size,
    output_dir,
    lowercase=True,
    strip_accents=None,
    special_tokens=BERT_SPECIAL_TOKENS,
    min_frequency=2,
    limit_alphabet=1000,
    report=None,
):
    """Trains a BERT WordPiece vocabulary and writes `output_dir/vocab.txt`.

    Args:
        files: list of UTF-8 text files (str or PathLike), or one file.
        vocabulary_size: int, the largest vocabulary to learn (the special tokens included).
        output_dir: directory to write `vocab.txt` into (created if needed).
        lowercase: bool, lower-case the text first (an "uncased" vocabulary).
        strip_accents: bool or None; None follows `lowercase`, like BERT.
        special_tokens: tokens placed first, in this order (ids 0, 1, ...).
        min_frequency: int, words rarer than this do not make new pieces.
        limit_alphabet: int, the most distinct characters kept as single-character pieces.
        report: a `CorpusReport` to fill with what was read and skipped (optional).

    Returns:
        The path of the written `vocab.txt` (one token per line; the line number is the id).

    Raises:
        ValueError: no corpus files, a missing file, an all-empty corpus, a file that is mostly not UTF-8 text,
            or a bad `vocabulary_size`.
        ImportError: the `tokenizers` package is not installed.
    """
    files = _check_corpus(files)
    _check_size(vocabulary_size, len(special_tokens) + 1)
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError("train_wordpiece needs the `tokenizers` package: pip install tokenizers") from error

    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    trainer = tokenizers.trainers.WordPieceTrainer(
        vocab_size=vocabulary_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        limit_alphabet=limit_alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus_lines(files, report if report is not None else CorpusReport()), trainer)
    os.makedirs(output_dir, exist_ok=True)
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    path = os.path.join(output_dir, "vocab.txt")
    with open(path, "w", encoding="utf-8") as file:
        file.writelines(f"{token}\n" for token, _ in vocabulary)
    return path


def train_sentencepiece(
    files, vocabulary_size, output_dir, model_type="unigram", character_coverage=1.0, max_sentence_length=16384,
    report=None,
):
    """Trains a T5-style SentencePiece model and writes `output_dir/spiece.model`.

    Ids follow T5: pad 0, eos `</s>` 1, unk 2, no bos. Text is NFKC-normalized (sentencepiece's default).

    Args:
        files: list of UTF-8 text files (str or PathLike), or one file.
        vocabulary_size: int, the exact vocabulary size (sentencepiece fails if the corpus is too small for it).
        output_dir: directory to write `spiece.model` into (created if needed).
        model_type: "unigram" (T5) or "bpe".
        character_coverage: float, share of characters covered by the vocabulary (1.0 keeps all; CJK-heavy
            corpora often use 0.9995).
        max_sentence_length: int, the longest line (in UTF-8 bytes) the trainer takes; longer lines are given to
            it in pieces cut at spaces (sentencepiece would skip them).
        report: a `CorpusReport` to fill with what was read, cut and skipped (optional).

    Returns:
        The path of the written `spiece.model`.

    Raises:
        ValueError: bad corpus (missing, empty, mostly not UTF-8 text) or arguments, or the trainer's own complaint
            (e.g. vocabulary too large).
        ImportError: the `sentencepiece` package is not installed.
    """
    files = _check_corpus(files)
    _check_size(vocabulary_size, 4)
    if not isinstance(max_sentence_length, int) or max_sentence_length < 16:
        raise ValueError(f"max_sentence_length must be an integer >= 16 (bytes), got {max_sentence_length!r}.")
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}.")
    try:
        import sentencepiece
    except ImportError as error:
        raise ImportError("train_sentencepiece needs the `sentencepiece` package: pip install sentencepiece") from error

    os.makedirs(output_dir, exist_ok=True)
    prefix = os.path.join(output_dir, "spiece")
    lines = _corpus_lines(files, report if report is not None else CorpusReport(), max_sentence_length)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=lines,
            model_prefix=prefix,
            vocab_size=vocabulary_size,
            model_type=model_type,
            character_coverage=character_coverage,
            max_sentence_length=max_sentence_length,
            pad_id=T5_PAD_ID,
            eos_id=T5_EOS_ID,
            unk_id=T5_UNK_ID,
            bos_id=-1,
            pad_piece="<pad>",
            eos_piece="</s>",
            unk_piece="<unk>",
            minloglevel=2,
        )
    except RuntimeError as error:
        raise ValueError(
            f"sentencepiece could not train a {vocabulary_size}-token {model_type} model on {files}: "
            f"{str(error).rstrip('.')}. "
            "Change vocabulary_size (--vocabulary-size) as the message says, or train on a larger corpus."
        ) from error
    os.remove(prefix + ".vocab")  # T5 checkpoints ship only the model
    return prefix + ".model"
