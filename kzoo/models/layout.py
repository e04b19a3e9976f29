"""How kzoo backbones shard their weights for `keras.distribution.ModelParallel` (JAX).

One `keras.distribution.LayoutMap` covers every family, because every backbone builds its
blocks from the same `kzoo.layers`, whose weight names it matches. It splits the large
kernels over the mesh's model axis the Megatron-LM way (Shoeybi et al. 2019, sec. 3), so a
model too big for one device's memory holds `1 / n` of each on each of `n` devices:

| variable (path ends with)                      | shape          | split on         |
|------------------------------------------------|----------------|------------------|
| `query/kernel`                                 | `(d, h, k)`    | `h` (heads)      |
| `key/kernel`, `value/kernel`                   | `(d, h_kv, k)` | `h_kv` (heads)   |
| `…attention/output/kernel` (attention output)  | `(h, k, d)`    | `h` (heads)      |
| `up/kernel`, `gate/kernel` (feed-forward in)   | `(d, f)`       | `f` (hidden)     |
| `down/kernel` (feed-forward out)               | `(f, d)`       | `f` (hidden)     |
| `token_embedding/embeddings`                   | `(V, d)`       | `d` (width)      |
| `token_embedding/reverse_embeddings` (untied)  | `(d, V)`       | `d` (width)      |

With grouped-query attention (`h_kv` key/value heads, each serving `h / h_kv` consecutive query
heads) a device holding key/value heads `[i, j)` holds exactly the query heads that read them, so
the split stays local as long as the model axis divides `h_kv` (Llama 2/3 and TinyLlama: 8 or 4,
Qwen2.5-0.5B: 2). Each attention head and each feed-forward unit then lives on one device: the input
projections need no communication and the output projection ends in one all-reduce, which
XLA's partitioner inserts from these layouts. The token table is split on its width rather
than its vocabulary because vocabularies are sized by tokenizers (GPT-2's 50257 and BART's
50265 are odd, a recipe's BPE size is anything) while widths are multiples of the head count:
the split then works for every preset and tokenizer. The lookup of a width-split table is
local; the tied output projection (`hidden @ table^T`) contracts over the split width, so its
logits are all-reduced (a vocabulary split would all-reduce the `(b, s, d)` embeddings
instead, cheaper when `V >> d`, for a family that pads its vocabulary to a multiple of `n`).
Everything else is replicated (no entry): biases, norms, position tables, relative position
biases and task heads, which are small.

A split that does not divide evenly must not reach JAX, which stops with an `IndivisibleError`
that names neither the variable nor the mesh: `ShapeCheckedModelParallel` raises a ValueError
naming the variable, its shape and the mesh axis size as the variable is created.

Example (two devices, both holding half of each kernel):
    >>> mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), keras.distribution.list_devices())
    >>> distribution = ShapeCheckedModelParallel(layout_map=layout_map(mesh), batch_dim_name="batch")
    >>> with distribution.scope():
    ...     model = GPTCausalLM(from_preset("gpt2_large"))
"""

import math

import keras


def layout_map(device_mesh, model_axis="model"):
    """The `keras.distribution.LayoutMap` that splits kzoo's kernels over `model_axis`.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with a `model_axis` axis, e.g. shape
            `(data replicas, model shards)` with axes `("batch", "model")`; the other axes
            replicate the weights (data parallel).
        model_axis: str, the mesh axis the kernels are split over.

    Returns:
        A LayoutMap (keys are regular expressions matched against whole variable paths) to
        pass as `keras.distribution.ModelParallel(layout_map=...)`.

    Raises:
        ValueError: `device_mesh` has no axis named `model_axis`.
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(f"layout_map: the device mesh has no {model_axis!r} axis to split kernels over; its axes "
                         f"are {list(device_mesh.axis_names)}.")
    layouts = keras.distribution.LayoutMap(device_mesh)
    # Keys are anchored on the names the layers give their own weights (and on `token_embedding`, the name
    # every backbone gives its TokenEmbedding), so each variable matches at most one key.
    layouts[r"(.*/)?(query|key|value)/kernel"] = (None, model_axis, None)  # (d, h, k); key/value (d, h_kv, k)
    layouts[r"(.*/)?[^/]*attention/output/kernel"] = (model_axis, None, None)  # (h, k, d)
    layouts[r"(.*/)?(up|gate)/kernel"] = (None, model_axis)  # (d, f)
    layouts[r"(.*/)?down/kernel"] = (model_axis, None)  # (f, d)
    layouts[r"(.*/)?token_embedding/embeddings"] = (None, model_axis)  # (V, d)
    layouts[r"(.*/)?token_embedding/reverse_embeddings"] = (model_axis, None)  # (d, V)
    return layouts


def check_variable_layout(path, shape, layout):
    """Raises ValueError unless `layout` (a `keras.distribution.TensorLayout`) splits every
    dimension of the variable at `path` with `shape` evenly over the mesh axes it names (an axis
    name, a tuple of names, or None for a dimension that is not split)."""
    if len(layout.axes) != len(shape):
        raise ValueError(f"ModelParallel: variable {path!r} has shape {tuple(shape)} but its layout "
                         f"{tuple(layout.axes)} has {len(layout.axes)} axes.")
    mesh = layout.device_mesh
    for size, axis in zip(shape, layout.axes, strict=True):
        names = () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)  # a dim may span axes
        parts = math.prod(mesh.shape[mesh.axis_names.index(name)] for name in names)
        if size % parts:
            raise ValueError(
                f"ModelParallel: variable {path!r} of shape {tuple(shape)} cannot be split on its dimension of "
                f"size {size} over the {axis!r} mesh axis of size {parts}; choose a {axis!r} axis size that "
                f"divides it (for kzoo backbones: a divisor of num_heads, intermediate_dim and hidden_dim).")


class ShapeCheckedModelParallel(keras.distribution.ModelParallel):
    """`keras.distribution.ModelParallel` that checks each variable's layout as the variable is created
    (`check_variable_layout`), so an uneven split stops with a ValueError naming the variable, its shape
    and the mesh axis size, not with JAX's `IndivisibleError` deep inside Keras. Same arguments."""

    def get_variable_layout(self, variable):
        layout = super().get_variable_layout(variable)
        check_variable_layout(variable.path, variable.shape, layout)
        return layout
