"""What a training step counts in a batch, for either backend (traced inside the compiled step).

A batch is `(inputs, targets[, sample_weight])` as `keras.utils.unpack_x_y_sample_weight`
reads it; `inputs` is a dict of `(batch, length)` arrays for kzoo's models.
"""

import keras


def token_count(inputs):
    """float32 scalar: the real (unpadded) tokens of `inputs`, summed over every `*padding_mask` it holds (a
    seq2seq batch counts encoder and decoder tokens); without a mask, the size of its first array."""
    masks = [value for name, value in inputs.items() if name.endswith("padding_mask")] if isinstance(
        inputs, dict) else []
    if masks:
        return sum(keras.ops.sum(keras.ops.cast(mask, "float32")) for mask in masks)
    first = keras.tree.flatten(inputs)[0]
    return keras.ops.cast(keras.ops.size(first), "float32")


def example_count(inputs):
    """float32 scalar: the batch size (the first dimension of the first input)."""
    return keras.ops.cast(keras.ops.shape(keras.tree.flatten(inputs)[0])[0], "float32")
