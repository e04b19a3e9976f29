"""A training batch, for either backend: what a step counts in it (traced inside the compiled step), and the
one-example pass that builds a compiled model's loss and metric variables. Needs no TensorFlow.

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


def build_compiled_state(model, strategy, batch):
    """Creates `model`'s compiled loss and metric variables under `strategy` (its `scope()`) with one eager pass on
    the first example of `batch` (numpy), then resets the metrics. Before training starts: the JAX steps carry
    these variables in and out of their compiled functions, so they must exist before the first trace."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(keras.tree.map_structure(lambda t: t[:1], batch))
    with strategy.scope():
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight)
    model.reset_metrics()
