"""Byte-level BPE tokenizers from a Hugging Face `tokenizer.json` (Llama-3, Qwen2, SmolLM, GPT-2, RoBERTa).

A `tokenizer.json` describes the whole pipeline; kzoo reads the parts its ops reproduce exactly and refuses the
rest with a one-line error naming the part:

* normalizer: none, or Unicode normalization (NFC, NFKC, NFD, NFKD; Qwen2 uses NFC), alone or in a Sequence;
* pre-tokenizer: `ByteLevel` with GPT-2's regex (`use_regex: true`, no prefix space), or a `Split` with one of the
  regexes of `kzoo.text.pretokenizers` (GPT-2, Qwen2, Llama-3) followed by `ByteLevel(use_regex=false)`;
* model: `BPE` over byte-level symbols (`vocab` + `merges`, given as "a b" strings or [a, b] pairs), with
  `ignore_merges` (Llama-3: a word that is itself a token is taken whole);
* post-processor: `TemplateProcessing` (the single-text template gives `encode`'s start and end tokens, e.g.
  Llama-3's `<|begin_of_text|>`), `RobertaProcessing` (a RoBERTa tokenizer), `ByteLevel` (nothing added) or a
  Sequence of those.

`added_tokens` (special tokens outside the BPE vocabulary, e.g. Qwen2's `<|endoftext|>`) get their ids; like every
kzoo tokenizer, text that spells one is tokenized as plain text (Hugging Face's `split_special_tokens=True`), so
user text cannot inject a control token. Chat templates, which put such tokens in on purpose, must build their ids
from `token_to_id` (or tokenize the pieces between the special tokens).

`tokenizer_config.json` names the special tokens (`bos_token`, `eos_token`, `pad_token`, `unk_token`); when the
post-processor adds nothing, its `add_bos_token` / `add_eos_token` decide the framing.
"""

import json
import os

import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text import pretokenizers
from kzoo.text.base import Tokenizer, TokenTable
from kzoo.text.bpe import ROBERTA_SPECIAL_TOKENS, BytePairTokenizer, RobertaTokenizer

NORMALIZATIONS = ("NFC", "NFKC", "NFD", "NFKD")


def read_tokenizer_json(path):
    """The parsed `tokenizer.json`; ValueError naming the file when it is missing or not a JSON object."""
    if not os.path.isfile(path):
        raise ValueError(f"tokenizer file {path!r} does not exist; pass the checkpoint's tokenizer.json.")
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"tokenizer file {path!r} is not valid JSON ({error}); pass the checkpoint's "
                         "tokenizer.json.") from error
    if not isinstance(value, dict) or not isinstance(value.get("model"), dict):
        raise ValueError(f"tokenizer file {path!r} has no \"model\" object; it is not a Hugging Face tokenizer.json.")
    return value


def token_content(value):
    """A special token of tokenizer_config.json: a string, or an AddedToken dict with "content"; else None."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def byte_level_from_json(tokenizer_json, config=None, source="tokenizer.json"):
    """A `BytePairTokenizer` (or `RobertaTokenizer`) from a parsed byte-level BPE `tokenizer.json`.

    Args:
        tokenizer_json: dict, the parsed `tokenizer.json`.
        config: dict, the parsed `tokenizer_config.json` ({} if absent).
        source: how errors name the file.

    Raises:
        ValueError: a part of the pipeline kzoo does not reproduce (the message names it), or a malformed model.
    """
    config = config or {}
    model = tokenizer_json["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{source}: the model is {model.get('type')!r}; kzoo reads BPE models from tokenizer.json.")
    if model.get("byte_fallback"):
        raise ValueError(f"{source}: a byte-fallback BPE is a SentencePiece-style model; kzoo reads those from "
                         "tokenizer.model (copy it beside tokenizer.json).")
    normalization = _normalization(tokenizer_json.get("normalizer"), source)
    pretokenizer = _pretokenizer(tokenizer_json.get("pre_tokenizer"), source)
    vocabulary, merges = _bpe_tables(tokenizer_json, source)
    processor = _post_processor(tokenizer_json.get("post_processor"), source)
    if processor["kind"] == "roberta":
        if pretokenizer != "gpt2" or normalization:
            raise ValueError(f"{source}: a RoBERTa post-processor with another normalizer or split than GPT-2's.")
        special = dict(ROBERTA_SPECIAL_TOKENS)
        special.update({kind: processor[kind] for kind in ("cls", "sep") if processor.get(kind)})
        special.update({"bos": special["cls"], "eos": special["sep"]})
        special.update(_config_specials(config, ("pad", "unk", "mask")))
        return RobertaTokenizer(vocabulary, merges, special_tokens=special)
    special = _config_specials(config, ("bos", "eos", "pad", "unk"))
    start, end = processor.get("start", []), processor.get("end", [])
    if processor["kind"] == "template":
        add_bos, add_eos = bool(start), bool(end)
        for kind, tokens in (("bos", start), ("eos", end)):
            if len(tokens) > 1:
                raise ValueError(f"{source}: the post-processor adds {tokens}; kzoo adds at most one token per side.")
            if tokens:
                special[kind] = tokens[0]
    else:
        add_bos, add_eos = bool(config.get("add_bos_token", False)), bool(config.get("add_eos_token", False))
    if not special.get("bos") and not special.get("eos") and "<|endoftext|>" in vocabulary:
        special.update({"bos": "<|endoftext|>", "eos": "<|endoftext|>"})  # GPT-2 configs name none
    special = {kind: token for kind, token in special.items() if token}
    tokenizer = BytePairTokenizer(vocabulary, merges, add_bos=add_bos, add_eos=add_eos, pretokenizer=pretokenizer,
                                  special_tokens=special, normalization=normalization,
                                  ignore_merges=bool(model.get("ignore_merges")))
    return tokenizer


def metaspace_from_json(tokenizer_json, config=None, source="tokenizer.json"):
    """A `MetaspaceBPETokenizer` from a parsed SentencePiece-style BPE `tokenizer.json` (Llama-2, TinyLlama).

    The "▁" prefix follows the file (a `Prepend` normalizer or `Metaspace(prepend_scheme="always")`: always;
    `prepend_scheme="first"`: not before a leading space), except that a `tokenizer_config.json` naming a Llama
    tokenizer class follows transformers 5, which rebuilds the pipeline: "first" unless `legacy: true`.

    Raises:
        ValueError: a part of the pipeline kzoo does not reproduce (the message names it).
    """
    config = config or {}
    model = tokenizer_json["model"]
    normalizer, pre_tokenizer = tokenizer_json.get("normalizer"), tokenizer_json.get("pre_tokenizer")
    steps = [] if not normalizer else (normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence"
                                       else [normalizer])
    kinds = [step.get("type") for step in steps]
    if kinds == ["Prepend", "Replace"] and not pre_tokenizer:
        prepend, replace = steps
        if prepend.get("prepend") != "▁" or replace.get("pattern") != {"String": " "} or replace.get("content") != "▁":
            raise ValueError(f"{source}: the normalizer {steps} is not Llama's Prepend('▁') + Replace(' ', '▁').")
        prefix_space = "always"
    elif not steps and (pre_tokenizer or {}).get("type") == "Metaspace":
        prefix_space = pre_tokenizer.get("prepend_scheme", "always")
        if pre_tokenizer.get("replacement") != "▁" or pre_tokenizer.get("split") or prefix_space not in (
                "always", "first"):
            raise ValueError(f"{source}: the pre-tokenizer {pre_tokenizer} is not supported by kzoo (a Metaspace "
                             "with '▁', split=false and prepend_scheme always or first).")
    else:
        raise ValueError(f"{source}: a SentencePiece-style BPE with normalizer {kinds} and pre-tokenizer "
                         f"{(pre_tokenizer or {}).get('type')!r} is not supported by kzoo.")
    if str(config.get("tokenizer_class") or "").startswith("Llama"):
        prefix_space = "always" if config.get("legacy", False) else "first"
    vocabulary, merges = _bpe_tables(tokenizer_json, source)
    special = {"bos": "<s>", "eos": "</s>", "unk": model.get("unk_token") or "<unk>"}
    special.update(_config_specials(config, ("bos", "eos", "pad", "unk")))
    processor = _post_processor(tokenizer_json.get("post_processor"), source)
    if processor["kind"] == "template":
        start, end = processor["start"], processor["end"]
        if len(start) > 1 or len(end) > 1:
            raise ValueError(f"{source}: the post-processor adds {start} / {end}; kzoo adds one token per side.")
        special.update({"bos": start[0]} if start else {})
        special.update({"eos": end[0]} if end else {})
        add_bos, add_eos = bool(start), bool(end)
    elif processor["kind"] == "none":
        add_bos, add_eos = bool(config.get("add_bos_token", True)), bool(config.get("add_eos_token", False))
    else:
        raise ValueError(f"{source}: a RoBERTa post-processor on a SentencePiece-style BPE is not supported.")
    return MetaspaceBPETokenizer(vocabulary, merges, special, add_bos=add_bos, add_eos=add_eos,
                                 prefix_space=prefix_space)


def _bpe_tables(tokenizer_json, source):
    """`(vocabulary, merges)` of a tokenizer.json's BPE model: token -> id (added tokens included) and the merge
    rules as "a b" strings (transformers 5 writes them as pairs); options kzoo does not reproduce are refused."""
    model = tokenizer_json["model"]
    for option in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(option):
            raise ValueError(f"{source}: BPE option {option}={model[option]!r} is not supported by kzoo.")
    vocabulary = dict(model.get("vocab") or {})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if not vocabulary or not merges:
        raise ValueError(f"{source}: the BPE model has no vocab or no merges.")
    for token in tokenizer_json.get("added_tokens") or []:
        vocabulary.setdefault(token["content"], int(token["id"]))
    return vocabulary, merges


def _config_specials(config, kinds):
    found = {kind: token_content(config.get(f"{kind}_token")) for kind in kinds}
    return {kind: token for kind, token in found.items() if token}


def _normalization(normalizer, source):
    """None, or the Unicode normal form the normalizer applies."""
    if not normalizer:
        return None
    parts = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    forms = [part.get("type") for part in parts]
    if not forms:
        return None
    if len(forms) == 1 and forms[0] in NORMALIZATIONS:
        return forms[0]
    raise ValueError(f"{source}: the normalizer {forms} is not supported by kzoo's byte-level BPE (only one of "
                     f"{', '.join(NORMALIZATIONS)}).")


def _pretokenizer(pre_tokenizer, source):
    """The kzoo pre-tokenizer name ("gpt2", "qwen2", "llama3") of a byte-level pre-tokenizer."""
    if not pre_tokenizer:
        raise ValueError(f"{source}: no pre_tokenizer; kzoo's byte-level BPE needs a ByteLevel pre-tokenizer.")
    parts = pre_tokenizer.get("pretokenizers", []) if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    kinds = [part.get("type") for part in parts]
    if kinds == ["ByteLevel"]:
        level = parts[0]
        if level.get("add_prefix_space"):
            raise ValueError(f"{source}: ByteLevel(add_prefix_space=true) is not supported by kzoo.")
        if not level.get("use_regex", True):
            raise ValueError(f"{source}: ByteLevel(use_regex=false) alone (no split) is not supported by kzoo.")
        return "gpt2"
    if kinds == ["Split", "ByteLevel"]:
        split, level = parts
        pattern = (split.get("pattern") or {}).get("Regex")
        if split.get("behavior") != "Isolated" or split.get("invert") or pattern is None:
            raise ValueError(f"{source}: pre-tokenizer Split(behavior={split.get('behavior')!r}, "
                             f"invert={split.get('invert')!r}) is not supported by kzoo (only an Isolated regex).")
        if level.get("add_prefix_space") or level.get("use_regex", True):
            raise ValueError(f"{source}: a Split followed by ByteLevel(add_prefix_space="
                             f"{level.get('add_prefix_space')}, use_regex={level.get('use_regex', True)}) is not "
                             "supported by kzoo.")
        return pretokenizers.check_pattern(pattern, source)
    raise ValueError(f"{source}: the pre-tokenizer {kinds} is not supported by kzoo's byte-level BPE.")


def _post_processor(processor, source):
    """{"kind": "none" | "template" | "roberta", ...}: the tokens the single-text template adds."""
    if not processor:
        return {"kind": "none"}
    parts = processor.get("processors", []) if processor.get("type") == "Sequence" else [processor]
    result = {"kind": "none"}
    for part in parts:
        kind = part.get("type")
        if kind == "ByteLevel":
            continue
        if kind == "RobertaProcessing":
            result = {"kind": "roberta", "cls": (part.get("cls") or [None])[0], "sep": (part.get("sep") or [None])[0]}
        elif kind == "TemplateProcessing":
            single = part.get("single") or []
            names = [("A" if "Sequence" in item else item.get("SpecialToken", {}).get("id")) for item in single]
            if names.count("A") != 1 or None in names:
                raise ValueError(f"{source}: the post-processor template {single} is not supported by kzoo.")
            at = names.index("A")
            result = {"kind": "template", "start": names[:at], "end": names[at + 1:]}
        else:
            raise ValueError(f"{source}: the post-processor {kind!r} is not supported by kzoo.")
    return result


class MetaspaceBPETokenizer(TokenTable, Tokenizer):
    """A SentencePiece-style BPE from `tokenizer.json` (Llama-2, TinyLlama, Mistral): "▁" for spaces, byte fallback.

    The text's spaces become "▁" and a "▁" is put in front (`prefix_space` "always"; "first": not when the text
    already starts with a space, transformers 5's Llama tokenizer); the characters are merged by the BPE merges; a
    piece left outside the vocabulary becomes its UTF-8 bytes (`<0x..>` tokens), or `<unk>` where those are missing.

    The text is merged word by word, a word being a run of "▁" and the characters up to the next "▁": the same
    result as merging the whole text, because no vocabulary token has a "▁" after another character (checked when
    the tokenizer is built). A word longer than `MAX_WORD_CHARACTERS` is merged in pieces of that many characters,
    so the cost stays linear (its ids may then differ around each cut; natural words are far shorter).

    Args:
        vocabulary: dict token -> id (added tokens included).
        merges: list of "a b" merges, highest priority first.
        special_tokens: dict kind -> token ("bos", "eos", "unk", "pad").
        add_bos, add_eos: bool, `encode` adds bos / eos.
        prefix_space: "always" or "first" (see above).
    """

    MAX_WORD_CHARACTERS = 256

    def __init__(self, vocabulary, merges, special_tokens, add_bos=True, add_eos=False, prefix_space="always",
                 name=None):
        super().__init__(name=name)
        if prefix_space not in ("always", "first"):
            raise ValueError(f"prefix_space must be 'always' or 'first', got {prefix_space!r}.")
        crossing = [t for t in vocabulary if "▁" in t.lstrip("▁") and not (t.startswith("<") and t.endswith(">"))]
        if crossing:
            raise ValueError(f"the vocabulary has tokens with '▁' after another character ({crossing[:3]}); kzoo's "
                             "SentencePiece-style BPE merges word by word and cannot reproduce it.")
        self.vocabulary, self.prefix_space = dict(vocabulary), prefix_space
        self._tokens = {i: token for token, i in self.vocabulary.items()}
        self._bpe = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=self.vocabulary, merges=list(merges), unsplittable_tokens=[], _allow_python_workflow=False
        )
        self._tables = [self._bpe.token_to_id_map, self._bpe.merge_ranks]
        self.special_token_ids = {k: self.vocabulary[t] for k, t in special_tokens.items() if t in self.vocabulary}
        unk = self.special_token_ids.get("unk", 0)
        byte_ids = [self.vocabulary.get(f"<0x{b:02X}>", unk) for b in range(256)]
        self._byte_ids = tf.constant(byte_ids, tf.int32)
        size = max(self._tokens) + 1
        # id -> text for detokenize: "▁" is a space, a byte token its byte, a special token nothing.
        texts = []
        for i in range(size):
            token = self._tokens.get(i, "")
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                texts.append(bytes([int(token[3:5], 16)]))
            elif i in self.special_token_ids.values():
                texts.append(b"")
            else:
                texts.append(token.replace("▁", " ").encode("utf-8"))
        self._texts = tf.constant(texts)
        self.pad_id = self.special_token_ids.get("pad", unk)
        for wanted, kind in ((add_bos, "bos"), (add_eos, "eos")):
            if wanted and kind not in self.special_token_ids:
                raise ValueError(f"add_{kind}=True needs the {kind} token {special_tokens.get(kind)!r} in the "
                                 "vocabulary.")
        self.start_ids = (self.special_token_ids["bos"],) if add_bos else ()
        self.end_ids = (self.special_token_ids["eos"],) if add_eos else ()
        self._graph = tf.function(self._tokenize_impl, input_signature=[tf.TensorSpec([None], tf.string)],
                                  autograph=False)

    @property
    def vocabulary_size(self):
        return max(self._tokens) + 1

    def _tokenize(self, strings):
        return self._graph(strings)

    def _tokenize_impl(self, strings):
        strings = tf.strings.regex_replace(strings, r"\x00", "")  # see kzoo.text.bpe
        prefixed = tf.strings.join([" ", strings])
        if self.prefix_space == "first":
            prefixed = tf.where(tf.strings.regex_full_match(strings, r"(?s) .*"), strings, prefixed)
        strings = tf.where(tf.equal(strings, ""), "", prefixed)  # an empty text stays empty
        text = tf.strings.regex_replace(strings, " ", "▁")
        words = tf_text.regex_split(text, "▁*[^▁]+|▁+", "▁*[^▁]+|▁+")  # (b, W)
        characters = tf.strings.unicode_split(words.flat_values, "UTF-8")  # (words, C)
        limit = self.MAX_WORD_CHARACTERS
        starts = tf.ragged.range(tf.zeros_like(characters.row_lengths()), characters.row_lengths(), limit)
        pieces = starts.with_flat_values(tf.strings.substr(
            tf.repeat(words.flat_values, starts.row_lengths()), starts.flat_values,
            tf.fill(tf.shape(starts.flat_values), tf.cast(limit, tf.int64)), unit="UTF8_CHAR"))  # (words, P)
        symbols = tf.strings.unicode_split(pieces.flat_values, "UTF-8")  # (pieces, C)
        merged = self._bpe._bpe_merge_tf(symbols)  # (pieces, T) ragged string
        ids = tf.cast(self._bpe.token_to_id_map.lookup(merged.flat_values), tf.int32)  # -1 outside the vocabulary
        unknown = ids < 0  # such a token is replaced by its bytes' <0x..> tokens (byte fallback)
        byte_values = tf.strings.bytes_split(merged.flat_values)  # (tokens, B)
        byte_ids = byte_values.with_flat_values(tf.gather(self._byte_ids, _byte_values(byte_values.flat_values)))
        fallback = tf.ragged.boolean_mask(
            byte_ids, byte_ids.with_flat_values(tf.repeat(unknown, byte_ids.row_lengths())))
        known = tf.ragged.boolean_mask(ids[:, tf.newaxis], (~unknown)[:, tf.newaxis])
        token_ids = tf.concat([known, fallback], axis=1)  # (tokens, 1 or B)
        piece_ids = tf.RaggedTensor.from_row_splits(token_ids, merged.row_splits).merge_dims(1, 2)
        word_ids = tf.RaggedTensor.from_row_splits(piece_ids, pieces.row_splits).merge_dims(1, 2)
        return tf.RaggedTensor.from_row_splits(word_ids, words.row_splits).merge_dims(1, 2)

    def _detokenize(self, ids):
        inside = (ids.flat_values >= 0) & (ids.flat_values < self.vocabulary_size)
        texts = tf.gather(self._texts, tf.where(inside, ids.flat_values, 0))
        text = tf.strings.reduce_join(ids.with_flat_values(texts), axis=1)
        text = tf.strings.regex_replace(text, "^ ", "")  # the prefix "▁"
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)


def _byte_values(single_bytes):
    """(n,) one-byte strings -> (n,) int32 byte values."""
    return tf.cast(tf.io.decode_raw(single_bytes, tf.uint8, fixed_length=1)[:, 0], tf.int32)
