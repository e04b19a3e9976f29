"""A keras-hub-free tokenizer for the tests that run kzoo.data pipelines (importing keras-hub takes seconds)."""

import tensorflow as tf


class CharTokenizer:
    """Every character is a sub-token (its code point is its id), so words split into several pieces."""

    def tokenize(self, strings):
        return tf.strings.unicode_decode(strings, "UTF-8")
