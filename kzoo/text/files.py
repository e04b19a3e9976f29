"""Pick and build the right tokenizer from the files a checkpoint ships."""

import json
import os

from kzoo.text.bpe import BytePairTokenizer
from kzoo.text.sentencepiece import SentencePieceTokenizer
from kzoo.text.wordpiece import WordPieceTokenizer

# Hugging Face names first, then keras-hub preset asset names.
WORDPIECE_FILES = ("vocab.txt", "vocabulary.txt")
BPE_FILES = (("vocab.json", "merges.txt"), ("vocabulary.json", "merges.txt"))
SENTENCEPIECE_FILES = ("spiece.model", "vocabulary.spm")


def tokenizer_from_files(tokenizer_files):
    """Builds the tokenizer a checkpoint's files describe.

    Args:
        tokenizer_files: dict basename -> path, e.g. `kzoo.convert.from_huggingface(...).tokenizer_files`.
            WordPiece: `vocab.txt` (keras-hub: `vocabulary.txt`); BPE: `vocab.json` + `merges.txt` (keras-hub:
            `vocabulary.json` + `merges.txt`); SentencePiece: `spiece.model` (keras-hub: `vocabulary.spm`).
            For WordPiece, casing comes from `tokenizer_config.json` (`do_lower_case`, `strip_accents`), else from
            `tokenizer.json` (HF BertNormalizer or keras-hub `lowercase`), else uncased. For GPT-2,
            `tokenizer_config.json`'s `add_bos_token`/`add_eos_token` are honoured.

    Returns:
        A `WordPieceTokenizer`, `BytePairTokenizer` or `SentencePieceTokenizer`.

    Raises:
        ValueError: no recognised vocabulary among the files (the message lists what was given and what is needed),
            or the vocabulary file itself is missing, empty or malformed.
    """
    files = {os.path.basename(name): os.fspath(path) for name, path in dict(tokenizer_files).items()}
    config = _read_json(files.get("tokenizer_config.json"))
    for name in WORDPIECE_FILES:
        if name in files:
            lowercase, strip_accents = _casing(config, _read_json(files.get("tokenizer.json")))
            return WordPieceTokenizer.from_files(files[name], lowercase=lowercase, strip_accents=strip_accents)
    for vocab, merges in BPE_FILES:
        if vocab in files and merges in files:
            return BytePairTokenizer.from_files(
                files[vocab],
                files[merges],
                add_bos=bool(config.get("add_bos_token", False)),
                add_eos=bool(config.get("add_eos_token", False)),
            )
    for name in SENTENCEPIECE_FILES:
        if name in files:
            return SentencePieceTokenizer.from_files(files[name])
    raise ValueError(
        f"No tokenizer vocabulary among the files {sorted(files) or 'given (none)'}. kzoo reads vocab.txt "
        "(WordPiece, BERT), vocab.json + merges.txt (byte-level BPE, GPT-2) or spiece.model (SentencePiece, T5); "
        "copy the checkpoint's vocabulary files beside config.json."
    )


def _read_json(path):
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Tokenizer file {path!r} is not readable JSON ({error}); fix or remove it.") from error
    return value if isinstance(value, dict) else {}


def _casing(config, tokenizer_json):
    """(lowercase, strip_accents) for a WordPiece vocabulary."""
    if "do_lower_case" in config:
        return bool(config["do_lower_case"]), config.get("strip_accents")
    normalizer = tokenizer_json.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        return bool(normalizer.get("lowercase", True)), normalizer.get("strip_accents")
    keras_config = tokenizer_json.get("config") or {}
    if "lowercase" in keras_config:
        return bool(keras_config["lowercase"]), keras_config.get("strip_accents") or None
    return True, None
