"""Tiny offline tokenizers and corpora for the kzoo.data tests."""

import keras_hub
import tensorflow as tf

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]"]
PAD, UNK, CLS, SEP, MASK, EOS = range(6)
WORDS = sorted({f"w{i}" for i in range(60)} | {"the", "cat", "sat", "on", "mat", "a", "dog", "ran", "denver",
                                                 "broncos", "won", "super", "bowl", "in", "2016", "who"})


class WhitespaceTokenizer:
    """Lower-cases, splits on whitespace, looks words up in a fixed vocabulary (unknown → [UNK])."""

    def __init__(self, words=WORDS):
        self.vocabulary = SPECIALS + list(words)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary), tf.range(len(self.vocabulary), dtype=tf.int32)
            ),
            default_value=UNK,
        )

    def vocabulary_size(self):
        return len(self.vocabulary)

    def tokenize(self, strings):
        return tf.ragged.map_flat_values(self.table.lookup, tf.strings.split(tf.strings.lower(strings)))


def wordpiece():
    """keras-hub WordPiece over a tiny vocabulary with sub-words and punctuation."""
    vocabulary = SPECIALS + WORDS + ["##s", "##ed", ",", ".", "?", "'", "play", "score"]
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True)


def corpus(num_documents=40, sentences=6, words=8, seed=0):
    """Documents of random `w<i>` sentences (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        [" ".join(f"w{i}" for i in rng.integers(0, 60, size=rng.integers(3, words + 1))) for _ in range(sentences)]
        for _ in range(num_documents)
    ]


def write(path, text, mode="w"):
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text, encoding="utf-8")
    return str(path)
