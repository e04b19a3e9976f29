"""Low-rank adapters (LoRA, Hu et al. 2021) on a kzoo backbone, through Keras' own `enable_lora`.

Every kzoo projection is a Keras `EinsumDense` (attention: `query`, `key`, `value`, `output`) or `Dense`
(feed-forward: `up`, `gate`, `down`), so `enable_lora` adds Keras' adapter pair to the chosen ones: the frozen kernel
`W` then acts as `W + (alpha / rank) * A @ B`, with `A` `(..., rank)` drawn at random and `B` `(rank, out)` zero, so a
model with fresh adapters computes exactly what the base model computes. Every other backbone weight is frozen (the
projections' biases too); a task's head outside the backbone stays trainable (a classifier must learn its labels).

Saving a model (`model.save`) writes each adapted kernel merged (`W + (alpha / rank) * A @ B`, Keras'
`EinsumDense`/`Dense.save_own_variables`), so a `.keras` file of a LoRA model is the merged model every export and
`kzoo.saving.load_model` read like any other. `save_adapters` / `load_adapters` keep the adapters alone (a small
`.npz`) and apply them to a fresh copy of the base model.
"""

import json
import math

import numpy as np

ATTENTION_TARGETS = ("query", "key", "value", "output")
FEED_FORWARD_TARGETS = ("up", "gate", "down")
TARGETS = ATTENTION_TARGETS + FEED_FORWARD_TARGETS
DEFAULT_TARGETS = ("query", "value")


def target_layers(backbone, targets):
    """The `EinsumDense`/`Dense` layers of `backbone` named by `targets` (see `TARGETS`), in layer order."""
    from kzoo.layers.attention import MultiHeadAttention
    from kzoo.layers.feed_forward import FeedForward

    chosen = []
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, MultiHeadAttention):
            chosen += [projection for projection in layer.projections if projection.name in targets]
        elif isinstance(layer, FeedForward):
            for name in FEED_FORWARD_TARGETS:
                dense = getattr(layer, f"{name}_dense", None)
                if dense is not None and name in targets:
                    chosen.append(dense)
    return chosen


def enable_lora(backbone, rank, alpha=None, targets=DEFAULT_TARGETS):
    """Adds rank-`rank` adapters to the `targets` projections of every block and freezes everything else.

    Args:
        backbone: a built kzoo backbone.
        rank: int > 0, the adapters' rank.
        alpha: float > 0, the adapters' scale numerator (`alpha / rank`); default `rank` (scale 1).
        targets: names from `TARGETS`: attention "query", "key", "value", "output"; feed-forward "up", "gate"
            (gated FFNs only), "down".

    Returns:
        The list of adapted layers.

    Raises:
        ValueError: a bad rank, alpha or target name, a target the backbone lacks, or adapters already enabled.
    """
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"enable_lora: rank must be a positive integer, got {rank!r}.")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0):
        raise ValueError(f"enable_lora: alpha must be a positive number, got {alpha!r}.")
    unknown = [name for name in targets if name not in TARGETS]
    if not targets or unknown:
        raise ValueError(f"enable_lora: targets must name some of {', '.join(TARGETS)}; got {list(targets)}.")
    if not backbone.built:
        raise ValueError("enable_lora: build the backbone first (call it once, or load it).")
    layers = target_layers(backbone, targets)
    missing = [name for name in targets if name not in {layer.name for layer in layers}]
    if missing:
        raise ValueError(f"enable_lora: this {type(backbone).__name__} has no {missing[0]!r} projection "
                         f"(\"gate\" exists only in gated feed-forwards).")
    if any(layer.lora_enabled for layer in layers):
        raise ValueError("enable_lora: adapters are already enabled on this backbone; enable them once.")
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    for layer in layers:
        layer.trainable = True
        layer.enable_lora(rank, lora_alpha=alpha)
        if layer.bias is not None:
            layer.bias.trainable = False
    return layers


def lora_variables(model):
    """`{path: variable}` of the adapter weights (`lora_kernel_a`, `lora_kernel_b`) in `model`, in layer order."""
    found = {}
    for layer in model._flatten_layers():
        if getattr(layer, "lora_enabled", False):
            found[layer.lora_kernel_a.path] = layer.lora_kernel_a
            found[layer.lora_kernel_b.path] = layer.lora_kernel_b
    return found


def count_lora_parameters(model):
    """The number of adapter weights in `model`."""
    return sum(math.prod(variable.shape) for variable in lora_variables(model).values())


def lora_settings(model):
    """`{"rank", "alpha", "targets"}` of the adapters in `model`, or None when it has none."""
    layers = [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]
    if not layers:
        return None
    return {"rank": int(layers[0].lora_rank), "alpha": float(layers[0].lora_alpha),
            "targets": [name for name in TARGETS if name in {layer.name for layer in layers}]}


_SETTINGS_KEY = "__kzoo_lora__"


def save_adapters(model, path):
    """Writes the adapter weights of `model` (and their rank, alpha and targets) to `path` (`.npz`): a small file
    that `load_adapters` applies to a fresh copy of the base model."""
    settings = lora_settings(model)
    if settings is None:
        raise ValueError("save_adapters: the model has no adapters; call enable_lora first.")
    arrays = {name: np.asarray(variable) for name, variable in lora_variables(model).items()}
    arrays[_SETTINGS_KEY] = np.frombuffer(json.dumps(settings).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    return path


def load_adapters(model, path):
    """Applies the adapters saved by `save_adapters` to `model` (the same base architecture): enables LoRA on its
    backbone with the saved rank, alpha and targets when it has none, then assigns every adapter weight.

    Raises:
        ValueError: the file is not a kzoo adapter file, or its adapters do not fit the model (names or shapes,
            listed), or the model's own adapters have other settings.
    """
    try:
        with np.load(path, allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
        settings = json.loads(bytes(arrays.pop(_SETTINGS_KEY)).decode("utf-8"))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a kzoo adapter file (save_adapters writes them): {error}") from error
    present = lora_settings(model)
    if present is None:  # on the backbone (`Backbone.enable_lora`), so that a task's head stays trainable
        backbone = getattr(model, "backbone", model)
        backbone.enable_lora(settings["rank"], settings["alpha"], settings["targets"])
    elif present != settings:
        raise ValueError(f"the model's adapters {present} differ from the file's {settings}.")
    variables = lora_variables(model)
    missing, unused = sorted(set(variables) - set(arrays)), sorted(set(arrays) - set(variables))
    if missing or unused:
        raise ValueError(f"{path} does not fit this model: missing {missing[:3]}, unused {unused[:3]} "
                         f"({len(missing)} and {len(unused)} in all); apply it to the base model it was trained on.")
    for name, variable in variables.items():
        if tuple(arrays[name].shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {name} has shape {arrays[name].shape}, the model's {tuple(variable.shape)}.")
        variable.assign(arrays[name])
    return settings


def merged_copy(model):
    """`model` itself, or, when it has LoRA adapters on float kernels, a copy with every adapted kernel merged
    (`W + (alpha / rank) A B`, computed by Keras' own `save_own_variables`, as `model.save` writes it), for export:
    the graph then runs one matmul per projection and holds no adapter variables, and computes what the adapted
    model computes (Keras' adapted layers use the same merged kernel).

    Adapters on a quantized kernel stay unmerged: merging would quantize the sum again and change the outputs.

    Raises:
        ValueError: the copy built from the model's config does not have the model's layers.
    """
    adapted = [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]
    if not adapted or any(layer.quantization_mode is not None for layer in adapted):
        return model
    copy = type(model).from_config(model.get_config())
    # The same config builds the same layers in the same order (Keras checks each layer's variable count and
    # shapes on load); an unnamed layer may get another automatic name.
    for original, twin in zip(model._flatten_layers(), copy._flatten_layers(), strict=True):
        if type(original) is not type(twin):
            raise ValueError(f"cannot merge the adapters of {type(model).__name__}: its copy has a "
                             f"{type(twin).__name__} where the model has {original.name!r}.")
        store = {}
        original.save_own_variables(store)
        twin.load_own_variables(store)
    return copy
