"""Training configuration: the `TrainConfig` dataclass and dotted, type-checked overrides.

A recipe's configuration is a dataclass whose fields are sections (`model`, `data`,
`train`), each itself a dataclass. Users change it with YAML files and command-line
overrides, applied in that order:

    kzoo train gpt_pretrain --config my.yaml --train.steps=500 --data.sequence_length 128

A key is a dotted path (`train.steps`) or, when unambiguous, a bare field name
(`--steps=500`). Values are parsed by the field's declared type; an unknown key or a
value of the wrong type raises `ConfigError` listing what is valid. No code is
executed from config files (YAML is read with `safe_load`).

A section that renames a field lists the old names in a `RENAMED_KEYS` class attribute
(`{"old_name": "new_name"}`): for one release the old key still works, in YAML files and
on the command line, with a `FutureWarning` naming the new key.
"""

import dataclasses
import json
import math
import os
import re
import types
import typing
import warnings

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# TensorFlow: default, mirrored, multi_worker, tpu (kzoo.train.strategy); JAX: data_parallel, model_parallel
# (kzoo.train.jax_distribution); both: auto, one_device. A name of the other backend is refused when the run starts.
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu", "data_parallel", "model_parallel")
DECAYS = ("linear", "cosine", "constant")
RESUME_MODES = ("never", "auto", "must")
# TrainConfig fields a resumed run may change: the length of the run, the optimizer's hyperparameters (e.g. a lower
# learning rate after a divergence), the hardware, where and how often it logs and saves. Any other config key
# (the model, the data, the batch size, the seed, precision, accumulation) must equal the one the checkpoints were
# written with, or the resumed run would be silently different (`resume_differences`).
RESUMABLE_TRAIN_KEYS = frozenset({
    "steps", "learning_rate", "warmup_steps", "decay", "end_learning_rate_ratio", "weight_decay", "clip_norm",
    "xla", "strategy", "devices", "tpu", "model_parallel_size", "coordinator_address", "num_processes", "process_id",
    "output_dir", "checkpoint_every", "keep_checkpoints", "eval_every",
    "eval_steps", "log_every", "steps_per_execution", "profile_steps", "verbose", "resume"})
# "/gpu:0", "GPU:1", "/device:CPU:0", "/job:worker/replica:0/task:1/device:GPU:0"
_DEVICE = re.compile(r"^(/job:\w+(/replica:\d+)?(/task:\d+)?)?/?(device:)?(cpu|gpu|tpu):\d+$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration key or value the user must fix (the message says how)."""


@dataclasses.dataclass
class TrainConfig:
    """How to train: schedule, optimizer, precision, distribution, checkpoints, logging.

    `batch_size` is the global batch (summed over replicas and workers); one step is
    one optimizer micro-step on one global batch (with gradient accumulation the
    weights change every `gradient_accumulation_steps` steps).
    """

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 30
    decay: str = "linear"  # linear | cosine | constant, after warmup, to end_learning_rate_ratio * peak
    end_learning_rate_ratio: float = 0.0
    weight_decay: float = 0.01  # AdamW; norms, biases and other 1-D variables are excluded
    clip_norm: float = 1.0  # global gradient norm clip; 0 disables
    gradient_accumulation_steps: int = 1
    precision: str = "float32"  # float32 | mixed_float16 (dynamic loss scaling) | mixed_bfloat16
    xla: bool = False  # TensorFlow: compile the train step with XLA (jit_compile); JAX always compiles it
    # TensorFlow: auto | default | one_device | mirrored | multi_worker | tpu;
    # JAX: auto | one_device | data_parallel | model_parallel
    strategy: str = "auto"
    devices: str = ""  # comma-separated devices for one_device/mirrored/data_parallel (default: all GPUs, else the CPU)
    tpu: str = ""  # TensorFlow: TPU name or grpc:// address for the TPU resolver ("local" on a TPU VM)
    model_parallel_size: int = 0  # JAX model_parallel: devices each weight is sharded over (0: all of them)
    # JAX multi-host (one process per host; or KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID):
    coordinator_address: str = ""  # host:port of process 0
    num_processes: int = 0
    process_id: int = -1
    output_dir: str = ""  # default runs/<recipe>
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    eval_every: int = 100
    eval_steps: int = 0  # 0: the whole eval set
    log_every: int = 10
    # Steps run per call of the compiled train function, with one host sync (loss, norm, NaN check, progress)
    # per call: 0 runs up to the next log/eval/checkpoint step, so the device never idles on the host in
    # between; 1 syncs after every step. Calls always end at log, eval, checkpoint and profile steps.
    steps_per_execution: int = 0
    seed: int = 0
    profile_steps: str = ""  # "START,STOP": capture a TensorBoard profile of those steps
    verbose: int = 1  # 1: Keras progress bar, 0: quiet
    # auto: resume from the output folder's checkpoints when they were written with this config (a mismatch is an
    # error naming the keys), else start fresh; never: start fresh, and refuse a folder that holds checkpoints;
    # must: refuse to start when there is no checkpoint to resume.
    resume: str = "auto"

    def validate(self):
        """Raises `ConfigError` naming the field when a value cannot work."""
        check_types(self, "train.")
        positive = ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "eval_every", "log_every",
                    "gradient_accumulation_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("warmup_steps", "eval_steps", "steps_per_execution", "seed", "verbose", "model_parallel_size",
                     "num_processes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}.")
        for name in ("weight_decay", "clip_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0 (0 disables), got {getattr(self, name)}.")
        if not 0 <= self.end_learning_rate_ratio <= 1:
            raise ConfigError(f"train.end_learning_rate_ratio must be in [0, 1], got {self.end_learning_rate_ratio}.")
        _choice("train.precision", self.precision, PRECISIONS)
        _choice("train.strategy", self.strategy, STRATEGIES)
        _choice("train.decay", self.decay, DECAYS)
        _choice("train.resume", self.resume, RESUME_MODES)
        for device in (part.strip() for part in self.devices.split(",")):
            if device and not _DEVICE.match(device):
                raise ConfigError(f"train.devices: {device!r} is not a device name; write e.g. /gpu:0 or "
                                  "/gpu:0,/gpu:1 (or /cpu:0).")
        if self.process_id < -1:
            raise ConfigError(f"train.process_id must be >= 0 (-1: from the environment), got {self.process_id}.")
        if self.devices.strip() and self.strategy not in ("auto", "one_device", "mirrored", "data_parallel"):
            raise ConfigError(f"train.devices is used by the one_device, mirrored, data_parallel and auto strategies, "
                              f"not by train.strategy={self.strategy!r}; remove --train.devices or change the "
                              "strategy.")
        if self.profile_steps:
            self.profile_range()

    def max_steps_per_call(self):
        """The most steps one call of the compiled train function runs: calls end at every log, eval and
        checkpoint step, at the last step and after `steps_per_execution` steps (0: no such limit)."""
        bounds = [self.steps, self.log_every, self.eval_every, self.checkpoint_every]
        return min(bounds + ([self.steps_per_execution] if self.steps_per_execution else []))

    def profile_range(self):
        """`(start, stop)` from `profile_steps`, or None."""
        if not self.profile_steps:
            return None
        try:
            start, stop = (int(part) for part in self.profile_steps.split(","))
        except ValueError:
            raise ConfigError(f"train.profile_steps must be 'START,STOP', got {self.profile_steps!r}.") from None
        if not 0 < start < stop:
            raise ConfigError(f"train.profile_steps needs 0 < START < STOP, got {self.profile_steps!r}.")
        return start, stop


def _choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}.")


def check_types(section, prefix=""):
    """Raises `ConfigError` for a field of dataclass `section` whose value is not of its declared type: a bool in
    an int or float field (YAML reads `yes`/`no` as booleans), a NaN or infinite float, a non-string text field.
    Catches what `_parse` rejects for values set in code."""
    for field in dataclasses.fields(section):
        kind, value, key = _field_type(section, field), getattr(section, field.name), prefix + field.name
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{key} expects an int, got {value!r}.")
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} expects a float, got {value!r}.")
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}.")
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{key} expects true or false, got {value!r}.")
        if kind is str and not isinstance(value, str):
            raise ConfigError(f"{key} expects a string, got {value!r}.")


def _flatten(mapping, prefix=""):
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_differences(recorded, current):
    """`[(dotted key, recorded value, current value)]` where the config a run's checkpoints were written with and
    the current one differ, leaving out the train keys a resumed run may change (`RESUMABLE_TRAIN_KEYS`) and keys
    only one side has (fields added or removed by another kzoo version cannot be compared)."""
    recorded = _flatten(json.loads(json.dumps(recorded)))
    current = _flatten(json.loads(json.dumps(current)))  # tuples as lists, as they were recorded
    return [(key, recorded[key], current[key]) for key in sorted(recorded.keys() & current.keys())
            if recorded[key] != current[key]
            and not (key.startswith("train.") and key.removeprefix("train.") in RESUMABLE_TRAIN_KEYS)]


# --- overrides -------------------------------------------------------------------------------------


def leaf_fields(config, prefix=""):
    """`{dotted key: (owner dataclass instance, field)}` for every non-dataclass field."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            out.update(leaf_fields(value, key + "."))
        else:
            out[key] = (config, field)
    return out


def renamed_keys(config, prefix=""):
    """`{old dotted key: new dotted key}` from the `RENAMED_KEYS` of every section of `config`."""
    out = {f"{prefix}{old}": f"{prefix}{new}" for old, new in getattr(type(config), "RENAMED_KEYS", {}).items()}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            out.update(renamed_keys(value, f"{prefix}{field.name}."))
    return out


def _match(key, names):
    """The dotted names that `key` (dotted, or a bare field name) means."""
    return [key] if key in names else [name for name in names if name.endswith("." + key)]


def resolve_key(config, key):
    """Maps a dotted key or an unambiguous bare field name to its dotted key (a renamed key, with a FutureWarning,
    to its new name)."""
    fields = leaf_fields(config)
    matches = _match(key, fields)
    if not matches:
        renamed = renamed_keys(config)
        old = _match(key, renamed)
        if len(old) == 1:
            new = renamed[old[0]]
            warnings.warn(f"config key {old[0]!r} is now {new!r}; the old name will stop working in the next "
                          "release.", FutureWarning, stacklevel=2)
            return new
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"--{key} is ambiguous: write one of {', '.join('--' + m for m in sorted(matches))}.")
    raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}.")


def set_value(config, key, value):
    """Sets dotted `key` of `config` from a string (command line) or a YAML value."""
    dotted = resolve_key(config, key)
    owner, field = leaf_fields(config)[dotted]
    setattr(owner, field.name, _parse(dotted, value, _field_type(owner, field)))


def apply_mapping(config, mapping, prefix=""):
    """Applies a nested dict (from YAML) onto `config`."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"expected a mapping of config keys at {prefix or 'the top level'}, got {mapping!r}.")
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            apply_mapping(config, value, key + ".")
        else:
            set_value(config, key, value)


def load_yaml(config, path):
    """Applies the YAML file at `path` onto `config` (safe_load: data only, no code)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            mapping = yaml.safe_load(file) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    apply_mapping(config, mapping)


def parse_command_line(config, argv):
    """Applies `--config FILE` (first) and `--key=value` / `--key value` tokens to `config`."""
    tokens = list(argv)
    pairs = []
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}: options are written --key=value or --key value.")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if tokens and not tokens[0].startswith("--"):
                value = tokens.pop(0)
            elif _is_bool_key(config, key):
                value = "true"  # a bare boolean flag: --train.xla
            else:
                raise ConfigError(f"--{key} needs a value (--{key}=VALUE).")
        pairs.append((key.replace("-", "_"), value))
    for key, value in pairs:
        if key == "config":
            load_yaml(config, value)
    for key, value in pairs:
        if key != "config":
            set_value(config, key, value)
    return config


def _is_bool_key(config, key):
    if key == "config":
        return False
    try:
        with warnings.catch_warnings():  # a renamed key is announced once, when it is set
            warnings.simplefilter("ignore", FutureWarning)
            owner, field = leaf_fields(config)[resolve_key(config, key.replace("-", "_"))]
    except ConfigError:
        return False
    return _field_type(owner, field) is bool


def _field_type(owner, field):
    return typing.get_type_hints(type(owner))[field.name]


def _parse(key, value, kind):
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        kind = options[0]
        origin = typing.get_origin(kind)
    if isinstance(value, bool) and kind is not bool and origin not in (list, tuple):
        raise ConfigError(f"{key} expects {getattr(kind, '__name__', kind)}, got the boolean {value!r} (YAML reads "
                          "yes/no/on/off/true/false as booleans; quote the value or write a number).")
    if isinstance(value, (dict, list)) and origin not in (list, tuple):
        raise ConfigError(f"{key} expects one {getattr(kind, '__name__', kind)}, got {value!r}"
                          + (" (write several items as one comma-separated string)." if kind is str else "."))
    if origin in (list, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        item_kind = typing.get_args(kind)[0] if typing.get_args(kind) else str
        items = [item.strip() if isinstance(item, str) else item for item in items]
        parsed = [_parse(key, item, item_kind) for item in items if item != ""]
        return tuple(parsed) if origin is tuple else parsed
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.replace("_", ""))
        if kind is float:
            number = float(value)
            if math.isfinite(number):
                return number
        if kind is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} expects {kind.__name__}, got {value!r}.") from None
    if kind is float:
        raise ConfigError(f"{key} must be a finite number, got {value!r}.")
    raise ConfigError(f"{key} has an unsupported type {kind!r}.")


# --- output -----------------------------------------------------------------------------------------


def to_dict(config):
    return dataclasses.asdict(config)


def describe(config):
    """One line per key: `key = value  (type)`, for `--help`."""
    lines = []
    for key, (owner, field) in leaf_fields(config).items():
        kind = _field_type(owner, field)
        name = getattr(kind, "__name__", str(kind).replace("typing.", ""))
        lines.append(f"  --{key}={getattr(owner, field.name)!r}  ({name})")
    return "\n".join(lines)


def write_resolved(config, directory, name="config", recipe=None):
    """Writes the resolved config as `<name>.yaml` and `<name>.json` under `directory`; returns the YAML path.

    `recipe`, when given, is recorded as a top-level `recipe:` key (read back by `kzoo eval`).
    """
    import yaml

    os.makedirs(directory, exist_ok=True)
    values = ({"recipe": recipe} if recipe else {}) | to_dict(config)
    yaml_path = os.path.join(directory, f"{name}.yaml")
    _write_atomically(yaml_path, yaml.safe_dump(values, sort_keys=False))
    _write_atomically(os.path.join(directory, f"{name}.json"), json.dumps(values, indent=2))
    return yaml_path


def _write_atomically(path, text):
    """Writes a temporary sibling renamed over `path`: a kill mid-write leaves the previous file whole."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, path)
