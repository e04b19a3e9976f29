"""Assigning Hugging Face tensors to kzoo layers, shared by the per-family converters.

Torch `nn.Linear` weights are `(out, in)`; kzoo kernels are `(in, out)`, and attention
kernels split heads: query/key/value `(d, h, k)`, output `(h, k, d)`.
"""

import numpy as np
from keras import ops

from kzoo.convert.hf_checkpoint import assign, linear_to_kernel, merge_heads_out, split_heads_in


def attention(layer, reader, names, transposed=True):
    """Loads a `MultiHeadAttention` from four projections.

    Args:
        layer: the kzoo `MultiHeadAttention` (built).
        reader: `WeightReader` over the checkpoint.
        names: dict with keys "query", "key", "value", "output" -> checkpoint name
            prefixes (".weight" / ".bias" are appended).
        transposed: True for `nn.Linear` `(out, in)` weights.
    """
    heads = layer.num_heads
    for role in ("query", "key", "value"):
        weight = reader.take(names[role] + ".weight")
        kernel = linear_to_kernel(weight) if transposed else weight
        projection = getattr(layer, f"{role}_dense")
        assign(projection.kernel, split_heads_in(kernel, heads), names[role] + ".weight")
        if layer.use_bias:
            bias = reader.take(names[role] + ".bias")
            assign(projection.bias, bias.reshape(heads, -1), names[role] + ".bias")
    weight = reader.take(names["output"] + ".weight")
    kernel = linear_to_kernel(weight) if transposed else weight
    assign(layer.output_dense.kernel, merge_heads_out(kernel, heads), names["output"] + ".weight")
    if layer.use_bias:
        assign(layer.output_dense.bias, reader.take(names["output"] + ".bias"), names["output"] + ".bias")


def dense(layer, reader, name, transposed=True):
    """Loads a Keras `Dense` from `name.weight` (and `name.bias` when the layer has one)."""
    weight = reader.take(name + ".weight")
    assign(layer.kernel, linear_to_kernel(weight) if transposed else weight, name + ".weight")
    if layer.use_bias:
        assign(layer.bias, reader.take(name + ".bias"), name + ".bias")


def norm(layer, reader, name, weight="weight", bias="bias"):
    """Loads a kzoo `LayerNorm` (scale + bias) or `RMSNorm` (scale only)."""
    assign(layer.scale, reader.take(f"{name}.{weight}"), f"{name}.{weight}")
    if getattr(layer, "use_bias", False):
        assign(layer.bias, reader.take(f"{name}.{bias}"), f"{name}.{bias}")


def feed_forward(layer, reader, up, down, gate=None, transposed=True):
    dense(layer.up_dense, reader, up, transposed)
    dense(layer.down_dense, reader, down, transposed)
    if gate is not None:
        dense(layer.gate_dense, reader, gate, transposed)


def embedding(variable, reader, name):
    assign(variable, reader.take(name), name)


def stored_head_is_tied(reader, head_name, embedding_name):
    """Whether an LM head is the token embedding, by the weights: the file stores no `head_name` (transformers drops
    a tied head when saving), or stores it equal to `embedding_name` (a tied head saved twice). A stored head that
    differs is the model's own, whatever config.json says (transformers 5 writes `tie_word_embeddings: true` for
    T5 v1.1 and mT5 files that carry their own head)."""
    if not reader.has(head_name):
        return True
    head, embedding = reader.peek(head_name), reader.peek(embedding_name)
    return embedding is not None and head.shape == embedding.shape and bool(np.allclose(head, embedding, atol=1e-6))


def tied_copy(reader, name, variable, what):
    """Consumes `name` if present, checking it repeats the already loaded `variable`.

    Hugging Face sometimes stores a tied weight twice (an LM head equal to the word
    embeddings). A copy that differs means the checkpoint is untied, which the kzoo
    model does not represent: that is an error, never a silent skip.
    """
    value = reader.take_optional(name)
    if value is None:
        return
    expected = ops.convert_to_numpy(variable)
    if value.shape != expected.shape or not np.allclose(value, expected, atol=1e-6):
        raise ValueError(
            f"Checkpoint weight {name!r} differs from {what}; kzoo ties them, so this "
            "checkpoint (with untied weights) cannot be represented."
        )


ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def activation(name, where):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{where}: activation {name!r} is not supported by kzoo; supported: {sorted(ACTIVATIONS)}."
        )
    return ACTIVATIONS[name]
