"""Quantized kzoo models: Keras' `quantize` on every projection, and what lets a quantized model save and reload.

`quantize_model` runs Keras' `model.quantize(mode)` (int8, int4, float8) on a kzoo backbone or task model: every
`Dense`/`EinsumDense` projection (attention, feed-forward, a task's dense head) is quantized; embeddings and norms
stay float. A backbone's config then records which layers are quantized, and how, as a `DTypePolicyMap` from
layer paths to policies (`serialized_dtype_policy`); on reload every layer finds its entry and is built quantized
before Keras loads the stored int8/int4 kernels and scales into it (`resolve_policy_maps`). `kzoo.saving` checks a
file's declared sizes before building anything, so `quantization_adjustment` / `quantized_values` count the values
a quantized layer really stores.
"""

import contextlib
import gc
import math
import warnings

import keras


def serialized_dtype_policy(model, backbone):
    """The serialized dtype policy a backbone's config records: its own policy, or, once `model` (the backbone
    itself or the task around it) has quantized layers (`model.quantize(mode)`), a
    `keras.dtype_policies.DTypePolicyMap` from each quantized layer's path to its policy (e.g.
    `"decoder_block_0/self_attention/query"` -> `int8_from_float32`), with the backbone's own policy as default.

    Every kzoo layer passes its dtype policy on to its sublayers, and a task's head takes the backbone's, so
    on reload each layer finds its path in the map and is built quantized (int8 kernel and scale, ...)
    before Keras loads the stored variables into it. Paths are the same on reload because every kzoo layer
    has a fixed name and is built inside its parent's constructor.

    The map is written in Keras' serialized form directly: `keras.dtype_policies.serialize` would record each
    policy in the saving scope, and a task serializes its backbone's map a second time (with its head's layers),
    which Keras would mark with random `shared_object_id`s.
    """
    base = _own_policy(backbone)
    quantized = {
        layer.path: _serialized_policy(policy)
        for layer in model._flatten_layers(include_self=False)
        if (policy := _own_policy(layer)).quantization_mode is not None
    }
    if not quantized:
        return keras.dtype_policies.serialize(base)
    return {"module": "keras.dtype_policies", "class_name": "DTypePolicyMap",
            "config": {"default_policy": base.name, "policy_map": quantized}, "registered_name": None}


def _serialized_policy(policy):
    return {"module": "keras.dtype_policies", "class_name": type(policy).__name__, "config": policy.get_config(),
            "registered_name": None}


QUANTIZATION_MODES = ("int8", "int4", "float8")


def quantize_model(model, mode, block_size=None):
    """Quantizes every `Dense`/`EinsumDense` of a kzoo model in place with Keras' `model.quantize(mode)`: the
    attention and feed-forward projections and a task's dense head (embeddings and norms stay as they are). The
    result saves and reloads quantized (`serialized_dtype_policy`).

    Args:
        model: a built kzoo backbone or task model whose projections are not quantized yet.
        mode: "int8" (per-channel int8 kernels), "int4" (int4 kernels packed two per byte) or "float8" (float8
            matmuls with delayed scaling; the kernels stay float32, so the file does not shrink).
        block_size: int4 only: inputs per scale (Keras' default 128), or -1 for one scale per output unit.

    Raises:
        ValueError: an unknown mode, a block size with another mode, or a model that is already quantized.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; use one of {', '.join(QUANTIZATION_MODES)}.")
    if block_size is not None and mode != "int4":
        raise ValueError(f"a block size applies to int4 only, not {mode}.")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                   or not (block_size > 0 or block_size == -1)):
        raise ValueError(f"the int4 block size must be a positive integer or -1 (per channel), got {block_size!r}.")
    modes = sorted({layer.quantization_mode for layer in model._flatten_layers() if layer.quantization_mode})
    if modes:
        raise ValueError(f"the model is already quantized ({', '.join(modes)}); quantize its float model instead.")
    config = None
    if block_size is not None:
        from keras.quantizers import Int4QuantizationConfig

        config = Int4QuantizationConfig(block_size=block_size)
    with warnings.catch_warnings(), collections_of_new_objects_only():
        warnings.simplefilter("ignore")  # Keras warns once per layer it leaves alone (norms, embeddings, dropout)
        model.quantize(mode, config=config)
    return model


@contextlib.contextmanager
def collections_of_new_objects_only():
    """Within the block, garbage collections skip the objects that were alive when it started; one full collection
    runs at its end.

    Keras runs a full `gc.collect()` each time quantization replaces a float kernel (so that device buffers are
    released sooner). With the ~450,000 objects a process holds once TensorFlow and a model are loaded, each pass
    took 0.2-0.3 s: quantizing BERT-base to int8 took 17-21 s, and 1.1-1.3 s inside this block (2 vCPUs, under
    load). `gc.freeze()` moves the objects alive now out of those passes. The replaced kernels are still freed as
    they go, by reference counting: the peak RSS of that quantization was the same with and without the block.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


def quantization_adjustment(owner, dtype, projection_shape):
    """How many more (or fewer) values a model's weights file holds than its parameter count because of the
    quantized layers that the serialized `dtype` (a backbone config's) names: 0 for a plain policy.

    Args:
        owner: str, the model class, for messages.
        dtype: the serialized dtype policy (a name, a dict, or None).
        projection_shape: `path -> (inputs, units)` of the model's `Dense`/`EinsumDense` kernels, or None.

    Raises:
        ValueError: `dtype` is not a dtype policy, or it quantizes a path that is not a projection of the model,
            or in a mode kzoo does not load.
    """
    if not isinstance(dtype, dict) or dtype.get("class_name") != "DTypePolicyMap":
        return 0
    try:
        policies = keras.dtype_policies.deserialize(dtype)
        entries = [(path, keras.dtype_policies.get(policies[path])) for path in policies]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{owner}: `dtype` is not a valid DTypePolicyMap ({error}).") from None
    adjustment = 0
    for path, policy in entries:
        if policy.quantization_mode is None:
            continue
        shape = projection_shape(path) if isinstance(path, str) else None
        if shape is None:
            raise ValueError(f"{owner}: `dtype` quantizes {path!r}, which is not a Dense or EinsumDense "
                             "projection of this model.")
        inputs, units = shape
        adjustment += quantized_values(policy, inputs, units) - inputs * units
    return adjustment


def quantized_values(policy, inputs, units):
    """The values Keras stores for an `(inputs, units)` kernel quantized under `policy` (bias excluded; an
    `EinsumDense` kernel counts as its reduced axes times its other axes):

    - int8: the int8 kernel and one scale per unit;
    - int4: the kernel packed two values per byte, `(inputs, ceil(units / 2))`, one scale per unit (block -1) or,
      with a block size, a scale and a zero point per block of inputs and unit plus each input's block index;
    - float8: the float kernel, and a scale and an amax history each for inputs, kernel and output gradients.

    Raises ValueError for another mode (GPTQ and AWQ are not supported by kzoo's loader).
    """
    mode = policy.quantization_mode
    if mode == "int8":
        return inputs * units + units
    if mode == "int4":
        packed = inputs * ((units + 1) // 2)
        block = getattr(policy, "block_size", -1)
        if block is None or block == -1:
            return packed + units
        return packed + 2 * math.ceil(inputs / block) * units + inputs
    if mode == "float8":
        return inputs * units + 3 * (1 + policy.amax_history_length)
    raise ValueError(f"quantization mode {mode!r} is not one kzoo loads; use int8, int4 or float8.")


def resolve_policy_maps(layers):
    """Gives each of `layers` built from a `DTypePolicyMap` its own policy from the map (the entry at its path, or
    the map's default).

    Keras' `Dense`/`EinsumDense` read `self.dtype_policy.quantization_mode` when they save
    (`_get_kernel_with_merged_lora`), which for a layer holding the whole map is the map's default: a reloaded
    quantized model could not be saved again (nor its adapters merged). With its own policy each layer is what
    `model.quantize` left it, and `serialized_dtype_policy` rebuilds the map from the layers.
    """
    for layer in layers:
        if isinstance(layer.dtype_policy, keras.dtype_policies.DTypePolicyMap):
            layer._dtype_policy = _own_policy(layer)


def _own_policy(layer):
    """A layer's own dtype policy; `layer.dtype_policy` is the whole map when it was built from one."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        return policy[layer.path] if layer.path else policy.default_policy
    return policy
