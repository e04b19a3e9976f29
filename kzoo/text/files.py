"""Pick and build the right tokenizer from the files a checkpoint ships."""

import json
import os

from kzoo.text import hf_json
from kzoo.text.bpe import BytePairTokenizer, RobertaTokenizer
from kzoo.text.marian import MarianTokenizer
from kzoo.text.sentencepiece import SentencePieceTokenizer, XLMRobertaTokenizer
from kzoo.text.wordpiece import WordPieceTokenizer

# Hugging Face names first, then keras-hub preset asset names.
WORDPIECE_FILES = ("vocab.txt", "vocabulary.txt")
BPE_FILES = (("vocab.json", "merges.txt"), ("vocabulary.json", "merges.txt"))
SENTENCEPIECE_FILES = ("spiece.model", "vocabulary.spm")
XLM_ROBERTA_FILE = "sentencepiece.bpe.model"
LLAMA_SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_JSON = "tokenizer.json"
MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
ROBERTA_CLASSES = ("RobertaTokenizer", "RobertaTokenizerFast", "CamembertTokenizer", "LongformerTokenizer",
                   "LongformerTokenizerFast", "BartTokenizer", "BartTokenizerFast")


def tokenizer_from_files(tokenizer_files):
    """Builds the tokenizer a checkpoint's files describe.

    Args:
        tokenizer_files: dict basename -> path, e.g. `kzoo.convert.from_huggingface(...).tokenizer_files`.
            Looked for in this order:

            * `vocab.txt` (keras-hub: `vocabulary.txt`): BERT WordPiece. Casing comes from
              `tokenizer_config.json` (`do_lower_case`, `strip_accents`), else from `tokenizer.json` (HF
              BertNormalizer or keras-hub `lowercase`), else uncased.
            * `source.spm` + `target.spm` + `vocab.json`: Marian / OPUS-MT (`MarianTokenizer`).
            * `sentencepiece.bpe.model`: XLM-R (`XLMRobertaTokenizer`, fairseq ids).
            * `tokenizer.model`: a Llama-2-style SentencePiece model; `<s>` is added unless
              `tokenizer_config.json` says `add_bos_token: false` (`add_eos_token` adds `</s>`); a text's leading
              space is the "▁" prefix (transformers 5's Llama tokenizer) unless it says `legacy: true`.
            * a Hugging Face `tokenizer.json` with a byte-level BPE model (Llama-3, Qwen2, SmolLM, GPT-2,
              RoBERTa; `kzoo.text.hf_json`), preferred to `vocab.json` + `merges.txt` because it also names the
              split regex, normalizer and special tokens; or with a SentencePiece-style BPE ("▁", byte fallback:
              Llama-2 / TinyLlama without tokenizer.model; `MetaspaceBPETokenizer`).
            * `vocab.json` + `merges.txt` (keras-hub: `vocabulary.json` + `merges.txt`): RoBERTa when
              `tokenizer_config.json`'s `tokenizer_class` is RoBERTa's (or, with no class named, the vocabulary
              has `<s>` and `</s>` but no `<|endoftext|>`), else GPT-2 (`add_bos_token`/`add_eos_token` honoured).
            * `spiece.model` (keras-hub: `vocabulary.spm`): T5 SentencePiece.

    Returns:
        A `WordPieceTokenizer`, `BytePairTokenizer`, `RobertaTokenizer`, `SentencePieceTokenizer`,
        `XLMRobertaTokenizer` or `MarianTokenizer`.

    Raises:
        ValueError: no recognised vocabulary among the files, or an incomplete set (vocab.json without merges.txt,
            a SentencePiece-style tokenizer.json without tokenizer.model; the message lists what was given and what
            is needed), or a vocabulary file that is missing, empty, malformed or describes a pipeline kzoo does not
            reproduce.
    """
    files = {os.path.basename(name): os.fspath(path) for name, path in dict(tokenizer_files).items()}
    config = _read_json(files.get("tokenizer_config.json"))
    tokenizer_class = str(config.get("tokenizer_class") or "")
    for name in WORDPIECE_FILES:
        if name in files:
            lowercase, strip_accents = _casing(config, _read_json(files.get(TOKENIZER_JSON)))
            return WordPieceTokenizer.from_files(files[name], lowercase=lowercase, strip_accents=strip_accents)
    marian = [name for name in MARIAN_FILES if name in files]
    if "source.spm" in files or "target.spm" in files:
        if len(marian) < len(MARIAN_FILES):
            missing = [name for name in MARIAN_FILES if name not in files]
            raise ValueError(f"The tokenizer files hold {marian} but not {missing}: a Marian tokenizer needs "
                             "source.spm, target.spm and vocab.json; copy the checkpoint's missing files.")
        return MarianTokenizer.from_files(*(files[name] for name in MARIAN_FILES))
    if XLM_ROBERTA_FILE in files:
        return XLMRobertaTokenizer.from_files(files[XLM_ROBERTA_FILE])
    if LLAMA_SENTENCEPIECE_FILE in files:
        if config.get("add_prefix_space", True) is False:
            raise ValueError(f"{files.get('tokenizer_config.json')!r} sets add_prefix_space: false, which kzoo's "
                             "SentencePiece tokenizer does not reproduce; remove the setting or the file.")
        return SentencePieceTokenizer.from_files(
            files[LLAMA_SENTENCEPIECE_FILE],
            add_bos=bool(config.get("add_bos_token", True)),
            add_eos=bool(config.get("add_eos_token", False)),
            prefix_space="always" if config.get("legacy", False) else "first",
        )
    hf_tokenizer = _hf_tokenizer_json(files.get(TOKENIZER_JSON))
    if hf_tokenizer is not None:
        model = hf_tokenizer["model"]
        where = f"tokenizer file {files[TOKENIZER_JSON]!r}"
        if model.get("type") == "BPE" and (model.get("byte_fallback") or _metaspace(hf_tokenizer)):
            return hf_json.metaspace_from_json(hf_tokenizer, config, source=where)
        if model.get("type") == "BPE":
            return hf_json.byte_level_from_json(hf_tokenizer, config, source=where)
    for vocab, merges in BPE_FILES:
        if vocab in files and merges in files:
            if _is_roberta(tokenizer_class, files[vocab]):
                return RobertaTokenizer.from_files(files[vocab], files[merges])
            return BytePairTokenizer.from_files(
                files[vocab],
                files[merges],
                add_bos=bool(config.get("add_bos_token", False)),
                add_eos=bool(config.get("add_eos_token", False)),
            )
    for name in SENTENCEPIECE_FILES:
        if name in files:
            return SentencePieceTokenizer.from_files(files[name])
    for vocab, merges in BPE_FILES:
        if (vocab in files) != (merges in files):
            have, lack = (vocab, merges) if vocab in files else (merges, vocab)
            raise ValueError(f"The tokenizer files hold {have} but not {lack}: a byte-level BPE needs both (or a "
                             "tokenizer.json); copy the checkpoint's missing file beside config.json.")
    if hf_tokenizer is not None:
        raise ValueError(f"{files[TOKENIZER_JSON]!r} holds a {hf_tokenizer['model'].get('type')!r} model; kzoo reads "
                         "BPE models from tokenizer.json (and WordPiece from vocab.txt, Unigram from a "
                         "SentencePiece .model file): copy the checkpoint's vocabulary file beside config.json.")
    raise ValueError(
        f"No tokenizer vocabulary among the files {sorted(files) or 'given (none)'}. kzoo reads vocab.txt "
        "(WordPiece, BERT), vocab.json + merges.txt (byte-level BPE, GPT-2, RoBERTa), tokenizer.json (byte-level "
        "BPE: Llama-3, Qwen2), sentencepiece.bpe.model (XLM-R), tokenizer.model (Llama-2), source.spm + "
        "target.spm + vocab.json (Marian) or spiece.model (SentencePiece, T5); copy the checkpoint's vocabulary "
        "files beside config.json."
    )


def _hf_tokenizer_json(path):
    """The parsed Hugging Face `tokenizer.json`, or None (absent, or a keras-hub preset's tokenizer.json)."""
    value = _read_json(path)
    return value if isinstance(value.get("model"), dict) and "type" in value["model"] else None


def _metaspace(tokenizer_json):
    """Whether a tokenizer.json writes spaces as "▁" (SentencePiece style) rather than byte-level."""
    return "▁" in json.dumps([tokenizer_json.get("normalizer"), tokenizer_json.get("pre_tokenizer")],
                             ensure_ascii=False)


def _is_roberta(tokenizer_class, vocab_json):
    if tokenizer_class:
        return tokenizer_class in ROBERTA_CLASSES
    try:
        with open(vocab_json, encoding="utf-8") as file:
            vocabulary = json.load(file)
    except (OSError, ValueError):
        return False  # BytePairTokenizer.from_files says what is wrong with the file
    return isinstance(vocabulary, dict) and "<s>" in vocabulary and "</s>" in vocabulary and (
        "<|endoftext|>" not in vocabulary)


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
