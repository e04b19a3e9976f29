"""Low-rank adapters (LoRA) and a quantized base on a recipe's task model: the `AdapterOptions` of `config.model`.

The runner calls `check_options` while it parses the command line (a bad value fails before any data is read) and
`apply_adapters` between the recipe's `build` and `model.compile`, so the optimizer is built for the adapters and
the task's head alone. In that order:

1. the model is built if it is not (`enable_lora` and `quantize` need its variables): called once on the first
   training batch;
2. with `quantize`, the *backbone* is quantized (Keras' `quantize`: int8 or int4 per-channel kernels; float8
   layers refuse adapters): a task head outside the backbone (a classifier's logits) stays float and trainable;
3. `backbone.enable_lora(rank, alpha, targets)` (`kzoo.models.lora`) freezes the rest of the backbone.

Every step is a fixed sequence of Keras calls on a model the recipe builds the same way each time, so the
variables come in the same order in every process: the checkpoints (`kzoo.train.checkpoint`, variables by index)
restore a LoRA or QLoRA run exactly, under either backend.

`kzoo eval RUN --quantize MODE` (`check_evaluation_quantize`, then `quantize_backbone` once the float weights are
restored) evaluates a run's newest checkpoint with its backbone quantized, to compare the task metrics with the
float model's.
"""

import math

from kzoo.models.backbone import backbone_of
from kzoo.models.lora import TARGETS, count_lora_parameters, lora_settings
from kzoo.models.quantization import QUANTIZATION_MODES, quantize_model
from kzoo.train.config import ConfigError

QUANTIZE_MODES = QUANTIZATION_MODES  # Keras' `quantize` modes for Dense/EinsumDense (`kzoo eval --quantize`)
LORA_QUANTIZE_MODES = ("int8", "int4")  # those LoRA trains over (Keras' float8 layers refuse adapters)


def has_adapter_options(model_config):
    """Whether a recipe's `model` section carries `AdapterOptions` (the fine-tuning recipes' do; pretraining's not)."""
    return all(hasattr(model_config, name) for name in ("lora_rank", "lora_alpha", "lora_targets", "quantize"))


def parse_targets(text):
    """`"query, value"` -> `("query", "value")`; raises `ConfigError` naming the valid projections."""
    targets = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in targets if name not in TARGETS]
    if not targets or unknown:
        raise ConfigError(f"model.lora_targets={text!r}: name some of {','.join(TARGETS)}, separated by commas "
                          f"(e.g. query,value).")
    return targets


def check_options(model_config):
    """Raises `ConfigError` (one line: the key and the fix) for bad adapter options; nothing to check for a section
    without them. Returns `(rank, alpha, targets, quantize)` with `alpha` None for the default (the rank)."""
    if not has_adapter_options(model_config):
        return None
    rank, alpha, quantize = model_config.lora_rank, model_config.lora_alpha, model_config.quantize
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ConfigError(f"model.lora_rank must be an integer >= 0 (0: full fine-tuning, e.g. 8), got {rank!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"model.lora_alpha must be a number >= 0 (0: the rank, scale 1), got {alpha!r}.")
    targets = parse_targets(model_config.lora_targets)
    if quantize not in ("", *LORA_QUANTIZE_MODES):
        float8 = " (Keras' float8 layers do not train adapters)" if quantize == "float8" else ""
        raise ConfigError(f"model.quantize must be one of {', '.join(LORA_QUANTIZE_MODES)} (or empty: a float "
                          f"base), got {quantize!r}{float8}.")
    if quantize and rank == 0:
        raise ConfigError(f"model.quantize={quantize} needs --model.lora_rank > 0 (e.g. 8): quantized kernels do not "
                          "train, so a quantized base learns only through adapters. To measure a trained run "
                          f"quantized, use `kzoo eval RUN --quantize {quantize}`.")
    return rank, (float(alpha) if alpha else None), targets, quantize


def apply_adapters(model_config, model, train_dataset=None, verbose=False, command="kzoo train"):
    """Quantizes the backbone of `model` and enables LoRA on it as `model_config` says; before `model.compile`.

    Args:
        model_config: a recipe's `model` section (`AdapterOptions` fields; any other section: nothing to do).
        model: the kzoo task model the recipe built.
        train_dataset: the recipe's training batches; the first is fed through `model` when it is not yet built.
        verbose: print one line with the trainable share of the parameters.
        command: the line's prefix (`kzoo train <recipe>`).

    Returns:
        `{"rank", "alpha", "targets", "quantize", "trainable_parameters", "parameters"}`, or None when the run
        trains every weight (`lora_rank` 0).

    Raises:
        ConfigError: a bad option, or a target the architecture lacks ("gate" in a non-gated feed-forward).
    """
    options = check_options(model_config)
    if options is None or options[0] == 0:
        return None
    rank, alpha, targets, quantize = options
    _ensure_built(model, train_dataset)
    backbone = backbone_of(model)
    if quantize:
        quantize_backbone(model, quantize)
    try:
        backbone.enable_lora(rank, alpha, targets)
    except ValueError as error:  # a target this architecture does not have, adapters already present
        raise ConfigError(f"model.lora_targets={model_config.lora_targets}: {error}") from None
    _forget_compiled_generation(model)
    trainable = sum(math.prod(variable.shape) for variable in model.trainable_variables)
    total = sum(math.prod(variable.shape) for variable in model.weights)
    settings = lora_settings(model)
    summary = {**settings, "quantize": quantize or None, "adapter_parameters": count_lora_parameters(model),
               "trainable_parameters": trainable, "parameters": total}
    if verbose:
        base = f" over an {quantize} base" if quantize else ""
        print(f"{command}: LoRA rank {rank} on {','.join(settings['targets'])}{base}: {trainable:,} of {total:,} "
              f"parameters train ({100.0 * trainable / max(total, 1):.2f}%)")
    return summary


def quantize_backbone(model, mode):
    """Quantizes the backbone of `model` in place (Keras' `Model.quantize(mode)`: every Dense/EinsumDense projection;
    norms and embeddings stay float); a task head outside the backbone is left as it is."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}.")
    quantize_model(backbone_of(model), mode)
    _forget_compiled_generation(model)


def check_evaluation_quantize(model_config, mode):
    """Raises `ConfigError` unless `kzoo eval --quantize MODE` applies to a run with this `model` section.

    The runner then quantizes the backbone of the restored float model (`quantize_backbone`); a LoRA run's adapters
    stay float on top of the quantized base, as in QLoRA. A run trained over a quantized base (`model.quantize`)
    is rebuilt quantized by plain `kzoo eval`, so `--quantize` is refused for it.
    """
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}.")
    trained = getattr(model_config, "quantize", "")
    if trained:
        raise ConfigError(f"this run was trained over an {trained} base (model.quantize={trained}), so plain "
                          "`kzoo eval` evaluates it quantized already: drop --quantize.")
    if mode not in LORA_QUANTIZE_MODES and getattr(model_config, "lora_rank", 0):
        raise ConfigError(f"--quantize {mode}: Keras' {mode} layers do not run LoRA adapters, and this is a LoRA run "
                          f"(model.lora_rank={model_config.lora_rank}); use {' or '.join(LORA_QUANTIZE_MODES)}.")


def _ensure_built(model, train_dataset):
    """Builds `model` by calling it on the first training batch, when the recipe returned it unbuilt (kzoo's task
    models are functional and built on construction)."""
    if model.built:
        return
    if train_dataset is None:
        raise ConfigError("the model is not built and there is no training batch to build it with.")
    batch = next(iter(train_dataset.take(1)))
    model(batch[0] if isinstance(batch, tuple) else batch, training=False)


def _forget_compiled_generation(model):
    """Drops `generate`'s compiled functions of `model`: TensorFlow traced them (e.g. for the "before" samples a
    recipe writes) with the float kernels and no adapters, and would keep running that graph."""
    from kzoo.generate.compile import clear

    clear(model)
