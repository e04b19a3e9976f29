"""Deterministic test text: a training corpus and a few hundred varied sentences.

Nothing is downloaded; every vocabulary in tests/text is trained on `corpus_lines()`.
"""

import random

WORDS = (
    "the quick brown fox jumps over lazy dog a model learns tokens from text and data "
    "transformer attention layer keras tensorflow export serving batch padding mask "
    "running runner runs ran unbelievable unbelievably international internationalization "
    "tokenizer tokenizers tokenization vocabulary vocabularies sentence sentences piece pieces"
).split()
CASED = ["Hello", "World", "BERT", "GPT", "Paris", "London", "McDonald", "iPhone", "NASA", "TensorFlow"]
ACCENTED = ["café", "naïve", "Ångström", "résumé", "façade", "Zürich", "São", "Ñandú", "coöperate", "Øresund"]
CJK = ["日本語", "中文", "東京", "汉字", "한국어", "カタカナ", "ひらがな", "中文字符测试"]
EMOJI = ["🙂", "🚀", "👍🏽", "❤️", "🇫🇷", "🤖", "🥲"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "—", "–", "(", ")", '"', "'", "«", "»", "¿", "¡", "#", "$", "%", "&", "@"]
NUMBERS = ["0", "42", "3.14", "1,000", "2024", "1e-5", "12345678901234567890", "½", "٣"]
URLS = ["https://example.com/a?b=c&d=e", "www.kzoo.dev/docs", "user@example.org", "ftp://x.y/z_1"]
APOSTROPHES = ["don't", "it's", "we're", "they've", "I'm", "you'll", "she'd", "O'Neil", "rock'n'roll", "it’s"]
SPACES = [" ", "  ", "\t", "\n", " \n ", "   ", "\u00a0", "\u3000", "\r\n", "\t\t "]
POOLS = [WORDS * 4, CASED, ACCENTED, CJK, EMOJI, PUNCT, NUMBERS, URLS, APOSTROPHES]

# Hand-picked edge cases; `sentences()` starts with these.
FIXED = [
    "",
    " ",
    "\t\n",
    "Hello, World!",
    "HELLO world hello",
    "café naïve Ångström",
    "CAFÉ NAÏVE ÅNGSTRÖM",
    "日本語のテキストと中文。",
    "emoji 🙂🚀👍🏽 end",
    "tabs\tand\nnewlines\r\nand   runs    of  spaces",
    "  leading and trailing  ",
    "https://example.com/path?q=1&r=2#frag",
    "don't stop, it's fine; we're OK",
    "a" * 150,
    "supercalifragilisticexpialidocious" * 3,
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "numbers: 3.14, 1,000, 12345678901234567890",
    "zero\u200bwidth and soft\u00adhyphen",
    "nbsp\u00a0here and ideographic\u3000space",
    "control\x07bell and\x0bvertical tab\x0cform feed",
    "ΟΔΟΣ Σίσυφος ß straße İstanbul",
    "unknown ☃ snowman ∑ sum",
    "\u00e9 vs e\u0301 (composed vs decomposed)",
    "'quoted' \"double\" `back` ~tilde^ |pipe|",
    "ﬁne ligature and ① circled",
    "trailing newline\n",
    "many\n\n\nnewlines  \n  and spaces\t",
    # rarer Unicode: unassigned, tag, new emoji, odd spaces/separators, NEL, Greek sigma, dotted I, titlecase,
    # ligatures, compatibility forms, combining marks, ZWJ sequences, BOM, private use, the last code point
    "\u0378x a\U000e0001b \U0001fae8 new emoji a\u1680b a\u180eb a\u2028b\u2029c a\u0085b",
    "ΟΔΟΣ οδος İstanbul ǅ ﬃ ẞ Ⅻ ㎏ ＡＢＣ 𝐀 \u0300a ‼ ⁉ x \u2009 y １２３",
    "a\u00a0 b  \u3000x a   \n\n  b  a\r\n\r\nb x\t\ty 'S 'LL 'Re i'M a1b2c3",
    "x\u200d\u200cy \U0001f468\u200d\U0001f469\u200d\U0001f467 \ufeffbom tab\x0b \ufffd \U0010ffff \ue000private",
]

# Inputs where kzoo knowingly differs from a reference (see tests/text/test_parity.py for why).
KNOWN_DIFFERENCES = {"bpe_nul": ["\x00nul", "a\x00b"]}


def corpus_lines(count=2000, seed=0):
    """Training text drawn like `sentences()` (another seed, one line each) plus the hand-picked edge cases, so
    their characters are in the vocabularies and parity is checked on real pieces, not only on unknown tokens."""
    lines = [" ".join(line.split()) for line in sentences(count, seed=seed + 100)[len(FIXED) :]]
    exotic = [" ".join(line.split()) for line in FIXED if line.strip()]
    return lines + exotic * 3


def sentences(count=300, seed=1):
    """`count` varied sentences: the FIXED edge cases, then random mixes of words with mixed case, accents, CJK,
    emoji, punctuation, numbers, URLs, apostrophes and whitespace runs (tabs, newlines, NBSP, ideographic space)."""
    rng = random.Random(seed)
    out = list(FIXED)
    while len(out) < count:
        parts = []
        for _ in range(rng.randint(1, 12)):
            word = rng.choice(rng.choice(POOLS))
            if rng.random() < 0.15:
                word = word.upper()
            elif rng.random() < 0.1:
                word = word.capitalize()
            parts.append(word)
            parts.append(rng.choice(SPACES) if rng.random() < 0.25 else " ")
        if rng.random() < 0.5:
            parts.pop()
        out.append("".join(parts))
    return out
