"""Byte-level BPE pre-tokenizers (the regex that cuts text into words before the merges) as RE2 ops.

Hugging Face `tokenizers` runs these regexes with Oniguruma, which has lookahead; TensorFlow's regex ops use RE2,
which has none. Every pattern kzoo supports ends in `\\s+(?!\\S)|\\s+`: a run of whitespace followed by a
non-space character gives up its last character, which then starts the next word (" world" keeps its space).
kzoo reproduces this without lookahead and without marker characters:

1. the text is cut into chunks just before the last character of every whitespace run that is followed by a
   non-space character (for the Qwen2 / Llama-3 patterns: unless that character is CR or LF, which
   `\\s*[\\r\\n]+` takes with the run). The reference scan always ends a word there: the lookahead alternative
   stops there, and no other alternative can reach across it;
2. each chunk is split by the pattern with `\\s+(?!\\S)` dropped; inside a chunk no run of whitespace is followed by
   a non-space character, so the lookahead never matters and plain leftmost-first matching gives the reference
   words.

`\\s` is Unicode whitespace here (RE2's `\\s` is ASCII only), as in Oniguruma. The patterns are recognised by their
exact text in `tokenizer.json`; `PATTERNS` lists them. Any other pattern is refused with an error naming it.
"""

import tensorflow as tf
import tensorflow_text as tf_text

_SPACE = r"\t\n\x{0B}\f\r\x{85}\p{Z}"  # Unicode White_Space (Oniguruma's \s)
_WHITESPACE_RUN = rf"[{_SPACE}]+"

_CONTRACTIONS = r"'s|'t|'re|'ve|'m|'ll|'d"
_GPT2 = rf"{_CONTRACTIONS}| ?\p{{L}}+| ?\p{{N}}+| ?[^{_SPACE}\p{{L}}\p{{N}}]+|[{_SPACE}]+"


def _llama3(digits):
    return (
        rf"(?i:{_CONTRACTIONS})|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|{digits}| ?[^{_SPACE}\p{{L}}\p{{N}}]+[\r\n]*"
        rf"|[{_SPACE}]*[\r\n]+|[{_SPACE}]+"
    )


# Reference pattern (as tokenizer.json writes it) -> (RE2 pattern without the lookahead, whether a run ending in
# CR/LF keeps its last character).
PATTERNS = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+": ("gpt2", _GPT2, False),
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+": ("qwen2", _llama3(r"\p{N}"), True),
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": ("llama3", _llama3(r"\p{N}{1,3}"), True),
}
GPT2_PATTERN = next(iter(PATTERNS))
NAMES = {name: pattern for pattern, (name, _, _) in PATTERNS.items()}


def check_pattern(pattern, where="the tokenizer"):
    """The kzoo name ("gpt2", "qwen2", "llama3") of a reference split pattern; ValueError for one kzoo lacks."""
    if pattern not in PATTERNS:
        known = ", ".join(sorted(NAMES))
        raise ValueError(
            f"{where} splits words with the regex {pattern!r}, which kzoo cannot reproduce without lookahead "
            f"(kzoo knows the GPT-2, Qwen2 and Llama-3 patterns: {known})."
        )
    return PATTERNS[pattern][0]


def split_words(strings, name):
    """(b,) valid UTF-8 `tf.string` -> (b, None) ragged words, as the reference pattern `name` splits them.

    NUL characters must be removed before (tensorflow-text's `regex_split` ignores everything after one).
    """
    pattern, keep_newline_runs = next((p, k) for n, p, k in PATTERNS.values() if n == name)
    chunks = _chunks(strings, keep_newline_runs)  # (b, C)
    words = tf_text.regex_split(chunks.flat_values, pattern, pattern)  # (chunks, W)
    return tf.RaggedTensor.from_row_splits(words, chunks.row_splits).merge_dims(1, 2)


def _chunks(strings, keep_newline_runs):
    """(b,) -> (b, C) ragged: each text cut before the last character of each whitespace run followed by text."""
    pieces, starts, ends = tf_text.regex_split_with_offsets(strings, _WHITESPACE_RUN, _WHITESPACE_RUN)  # (b, P)
    flat = pieces.flat_values
    last = tf.strings.substr(flat, -1, 1, unit="UTF8_CHAR")
    is_space = tf.strings.regex_full_match(flat, _WHITESPACE_RUN)
    if keep_newline_runs:
        is_space &= ~tf.strings.regex_full_match(last, r"[\r\n]")
    position = tf.ragged.range(pieces.row_lengths()).flat_values
    has_next = position < tf.repeat(pieces.row_lengths(), pieces.row_lengths()) - 1
    cut_at = ends.flat_values - tf.cast(tf.strings.length(last), tf.int64)  # byte offset of the run's last character
    cuts = tf.ragged.boolean_mask(pieces.with_flat_values(cut_at), pieces.with_flat_values(is_space & has_next))
    cuts = tf.cast(cuts, tf.int64)
    batch = tf.shape(strings, out_type=tf.int64)[0]
    zero = tf.RaggedTensor.from_tensor(tf.zeros([batch, 1], tf.int64))
    total = tf.RaggedTensor.from_tensor(tf.cast(tf.strings.length(strings), tf.int64)[:, tf.newaxis])
    chunk_starts = tf.concat([zero, cuts], axis=1)
    chunk_ends = tf.concat([cuts, total], axis=1)
    sources = tf.repeat(strings, chunk_starts.row_lengths())
    text = tf.strings.substr(sources, chunk_starts.flat_values, chunk_ends.flat_values - chunk_starts.flat_values)
    return chunk_starts.with_flat_values(text)
