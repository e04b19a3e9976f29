"""Reading kzoo layers into Hugging Face tensors, shared by the per-family exporters (the inverse of `_assign`).

kzoo kernels are `(in, out)`; torch `nn.Linear` weights are `(out, in)`, so they are transposed (GPT-2's `Conv1D`
weights are stored `(in, out)` and are not). Attention kernels merge their heads back: query/key/value
`(d, h, k)` -> `(d, h * k)`, output `(h, k, d)` -> `(h * k, d)`, biases `(h, k)` -> `(h * k,)`. Every tensor is
written float32, C-contiguous, under a name that may be used only once.
"""

import dataclasses

import numpy as np
from keras import ops


class ExportRefused(ValueError):
    """A kzoo model (or an option of it) that no Hugging Face architecture represents; the message names it."""


@dataclasses.dataclass
class FamilyExport:
    """What a family exporter returns to `to_huggingface`.

    Attributes:
        architecture: the transformers class, e.g. "BertForPreTraining".
        model_type: the `config.json` model_type, e.g. "bert".
        config: the architecture's `config.json` fields (special token ids are added by the caller).
        tensors: `Tensors`, every weight under its Hugging Face name.
        notes: what the file leaves out or approximates, one sentence each (e.g. a head exported as backbone).
        special_tokens: which of the tokenizer's special ids the config takes, as
            kzoo kind ("pad", "bos", "eos", ...) -> config key ("pad_token_id", ...).
        decoder_start: encoder-decoders: the config key whose id starts the decoder ("pad_token_id" for T5 and
            Marian, "eos_token_id" for BART), written as `decoder_start_token_id`; None for other models.
        required_tokens: the kinds of `special_tokens` the architecture cannot be built without (Marian's pad id
            is its embedding's padding index and decoder start); missing ones are an error, never a guess.
    """

    architecture: str
    model_type: str
    config: dict
    tensors: "Tensors"
    notes: list
    special_tokens: dict
    decoder_start: str | None = None
    required_tokens: tuple = ()


class Tensors(dict):
    """name -> float32 array, in insertion order; a name written twice is a bug in the exporter."""

    def put(self, name, value):
        if name in self:
            raise AssertionError(f"exporter wrote the tensor {name!r} twice")
        self[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def value(variable):
    """A Keras variable as a float32 NumPy array (bfloat16/float16 variables are widened exactly)."""
    return np.asarray(ops.convert_to_numpy(ops.cast(variable, "float32")), dtype=np.float32)


def kernel_to_linear(kernel):
    """Keras kernel `(in, out)` -> torch `nn.Linear` weight `(out, in)`."""
    return np.asarray(kernel).T


def attention(tensors, layer, names, transposed=True, use_bias=None, output_bias=None):
    """Writes a kzoo `MultiHeadAttention` as four projections.

    Args:
        tensors: `Tensors` to write into.
        layer: the built `MultiHeadAttention`.
        names: dict "query"/"key"/"value"/"output" -> name prefix (".weight" / ".bias" are appended).
        transposed: True for `nn.Linear` `(out, in)` weights.
        use_bias: whether the query/key/value projections have biases (default: the layer's `use_bias`).
        output_bias: whether the output projection has one (default: the layer's `output_bias`, else `use_bias`).
    """
    use_bias = layer.use_bias if use_bias is None else use_bias
    if output_bias is None:
        output_bias = getattr(layer, "output_bias", None)
        output_bias = use_bias if output_bias is None else output_bias
    for role in ("query", "key", "value"):
        projection = getattr(layer, f"{role}_dense")
        kernel = value(projection.kernel)  # (d, h, k)
        kernel = kernel.reshape(kernel.shape[0], -1)  # (d, h * k)
        tensors.put(names[role] + ".weight", kernel_to_linear(kernel) if transposed else kernel)
        if use_bias:
            tensors.put(names[role] + ".bias", value(projection.bias).reshape(-1))  # (h, k) -> (h * k,)
    kernel = value(layer.output_dense.kernel)  # (h, k, d)
    kernel = kernel.reshape(-1, kernel.shape[-1])  # (h * k, d)
    tensors.put(names["output"] + ".weight", kernel_to_linear(kernel) if transposed else kernel)
    if output_bias:
        tensors.put(names["output"] + ".bias", value(layer.output_dense.bias))


def dense(tensors, layer, name, transposed=True):
    """Writes a Keras `Dense` as `name.weight` (and `name.bias` when the layer has one)."""
    kernel = value(layer.kernel)
    tensors.put(name + ".weight", kernel_to_linear(kernel) if transposed else kernel)
    if layer.use_bias:
        tensors.put(name + ".bias", value(layer.bias))


def norm(tensors, layer, name, weight="weight", bias="bias"):
    """Writes a kzoo `LayerNorm` (scale + bias) or `RMSNorm` (scale only)."""
    tensors.put(f"{name}.{weight}", value(layer.scale))
    if getattr(layer, "use_bias", False):
        tensors.put(f"{name}.{bias}", value(layer.bias))


def feed_forward(tensors, layer, up, down, gate=None, transposed=True):
    """Writes a kzoo `FeedForward`: `up`, `down` and, for a gated one, `gate` (name prefixes)."""
    dense(tensors, layer.up_dense, up, transposed)
    dense(tensors, layer.down_dense, down, transposed)
    if gate is not None:
        dense(tensors, layer.gate_dense, gate, transposed)


def token_table(tensors, token_embedding, name, what):
    """Writes the `(vocabulary_size, d)` token table; a table padded past the vocabulary has no HF form."""
    if token_embedding.table_rows != token_embedding.vocabulary_size:
        raise ExportRefused(
            f"{what}: the token table is padded to {token_embedding.table_rows} rows for "
            f"vocabulary_size={token_embedding.vocabulary_size} (pad_vocabulary_to_multiple_of="
            f"{token_embedding.pad_to_multiple_of}); no Hugging Face architecture has padding rows."
        )
    tensors.put(name, value(token_embedding.embeddings))


# kzoo activation -> the Hugging Face `hidden_act` / `activation_function` name that computes it.
ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation(name, what):
    if name not in ACTIVATIONS:
        raise ExportRefused(
            f"{what}: activation {name!r} has no Hugging Face name (exportable: {sorted(ACTIVATIONS)})."
        )
    return ACTIVATIONS[name]


def options(backbone, implied):
    """The backbone's family-config fields, name -> value (what `get_config` stores).

    `implied` gives the value of an option that this kzoo version's config does not have yet (what the code
    computes without it), so the exporter's checks hold before and after the option exists.
    """
    found = {field.name: getattr(backbone, field.name) for field in dataclasses.fields(backbone.config_class)}
    return {**implied, **found}


def defaults(backbone):
    return {field.name: field.default for field in dataclasses.fields(backbone.config_class)}


def require(found, wanted, target, what):
    """Refuses the first field of `found` whose value differs from `wanted[field]` (the values `target` can hold).

    `wanted` maps a field to one value or to a tuple of accepted values. A field `found` has that the exporter does
    not know is checked by `require_defaults`.
    """
    for field, accepted in wanted.items():
        choices = accepted if isinstance(accepted, tuple) else (accepted,)
        if found[field] not in choices:
            shown = " or ".join(repr(choice) for choice in choices)
            raise ExportRefused(
                f"{what}: {field}={found[field]!r} has no Hugging Face {target} equivalent ({target} needs {shown})."
            )


def require_defaults(found, known, default, what):
    """Refuses a family option the exporter does not know (not in `known`) that is not at its default."""
    for field in sorted(set(found) - set(known)):
        if found[field] != default[field]:
            raise ExportRefused(
                f"{what}: option {field}={found[field]!r} is not mapped to any Hugging Face architecture by this "
                "exporter."
            )
