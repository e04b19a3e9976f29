"""The recipe runner: command line, set-up, training or evaluation, the outputs and the final report.

A recipe module defines a config dataclass (sections `model`, `data`, `train`) and
`build(config, workdir) -> RecipeParts`; its `main(argv)` calls `run_recipe`. The
runner parses `--config FILE.yaml` and dotted overrides, seeds everything, sets the
precision policy, resolves the strategy, calls `build` under `strategy.scope()`,
adds a fine-tuning recipe's LoRA adapters over an optionally quantized backbone
(`model.lora_rank`, `model.quantize`: `kzoo.recipes.adapters`), compiles with the
kzoo optimizer (for the trainable weights: with LoRA, the adapters and the task head),
writes the resolved config beside the checkpoints and into TensorBoard, trains
(resuming from the newest checkpoint in the output directory, if any), saves
`<output_dir>/model.keras` (a LoRA run's adapters merged, and alone in `adapters.npz`),
the tokenizer files and a sample of the held-out examples (`kzoo.recipes.heldout`), and
prints where everything is. The file names of a run directory are `kzoo.run_directory`'s.

Resuming (`--train.resume`, default `auto`) is checked before anything is built or
written: every checkpoint records the run's config and the hashes of its tokenizer
files, and a folder whose checkpoints were written with other data or another model
is refused with the differing keys named (`CheckpointManager.check_resume`).
"""

import contextlib
import dataclasses
import hashlib
import math
import os
import sys
import time

from kzoo.messages import one_line, warnings_as_lines
from kzoo.recipes import outputs
from kzoo.run_directory import CONFIG_NAME, MODEL_FILE, RunDirectory
from kzoo.train.config import (
    ConfigError,
    TrainConfig,
    check_types,
    describe,
    parse_command_line,
    to_dict,
    write_resolved,
)
from kzoo.visualize.attention import token_labels


@dataclasses.dataclass
class RecipeModelConfig:
    """A recipe's `model` section: a kzoo preset, its dropout, and optional size overrides.

    `overrides` is `key=value` pairs separated by commas, keys being fields of the
    family's config (e.g. `num_layers=4,hidden_dim=256`); `vocabulary_size` and
    `max_sequence_length` are set by the recipe from the tokenizer and the data.
    """

    preset: str = ""
    dropout: float = 0.1
    overrides: str = ""

    def preset_arguments(self):
        arguments = {"dropout": self.dropout}
        for pair in filter(None, (item.strip() for item in self.overrides.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"model.overrides needs key=value pairs, got {pair!r}.")
            arguments[key.strip()] = _literal(value.strip())
        return arguments


@dataclasses.dataclass
class AdapterOptions:
    """The `model` keys of a fine-tuning recipe that train low-rank adapters (LoRA) instead of every weight.

    `lora_rank` > 0 adds rank-`lora_rank` adapters to the `lora_targets` projections of every block
    (`kzoo.models.lora`) and freezes the rest of the backbone; `lora_alpha` scales them (`alpha / rank`, 0: the
    rank, scale 1). `quantize` ("int8", "int4") quantizes the base weights first, so the adapters train over a
    quantized base (QLoRA-style); it needs `lora_rank` (`kzoo.recipes.adapters`).
    """

    lora_rank: int = 0  # 0: full fine-tuning
    lora_alpha: float = 0.0  # 0: lora_rank (scale 1)
    lora_targets: str = "query,value"  # comma-separated: query, key, value, output, up, gate, down
    quantize: str = ""  # "", int8, int4: the base's weights, before the adapters (needs lora_rank)


@dataclasses.dataclass
class FineTuningModelConfig(AdapterOptions, RecipeModelConfig):
    """A fine-tuning recipe's `model` section: a preset (random weights) or a trained `checkpoint` to start from,
    and the adapter options (`AdapterOptions`)."""

    checkpoint: str = ""  # a kzoo .keras file, HF checkpoint or keras-hub preset directory; empty: the preset


def _literal(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


@dataclasses.dataclass
class RecipeParts:
    """What `build` returns.

    Attributes:
        model: a kzoo task model (not yet compiled), built under the strategy scope.
        train_dataset: finite, deterministic `tf.data.Dataset` of global batches.
        eval_dataset: held-out batches, or None.
        evaluators: `fn(model, results) -> dict` task metrics / sample texts.
        attention_example: one example's inputs (batch of one) for the attention maps in TensorBoard, or None.
        tokenizer: the kzoo tokenizer of the run; labels the attention maps' axes with its tokens.
        tokenizer_files: `{basename: path}` copied next to the saved model.
        extra_files: `{basename: path}` also copied (e.g. a label vocabulary).
        compile_arguments: extra `model.compile` arguments (loss weights, metrics).
    """

    model: object
    train_dataset: object
    eval_dataset: object = None
    evaluators: list = dataclasses.field(default_factory=list)
    attention_example: dict | None = None
    tokenizer: object = None
    tokenizer_files: dict = dataclasses.field(default_factory=dict)
    extra_files: dict = dataclasses.field(default_factory=dict)
    compile_arguments: dict = dataclasses.field(default_factory=dict)


def parse_arguments(name, config, argv, description=""):
    """Applies `argv` to `config`; prints the keys and exits on `--help`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"usage: kzoo train {name} [--config FILE.yaml] [--KEY=VALUE ...]\n\n{description.strip()}\n\n"
              f"Keys (dotted, or the bare name when unambiguous) and defaults:\n{describe(config)}")
        raise SystemExit(0)
    parse_command_line(config, argv)
    train = config.train
    train.output_dir = train.output_dir or RunDirectory.default(name).root
    train.validate()
    for field in dataclasses.fields(config):  # the model and data sections: types, finite floats
        section = getattr(config, field.name)
        if dataclasses.is_dataclass(section) and section is not train:
            check_types(section, f"{field.name}.")
    from kzoo.recipes import adapters  # imports Keras: not for --help

    adapters.check_options(getattr(config, "model", None))  # LoRA / quantize values, before any data is read
    return config


def run_recipe(name, config, build, argv=None, description="", evaluate_only=False, quantize=""):
    """Parses `argv` onto `config`, then trains (or only evaluates); returns the result dict.

    `quantize` ("int8", "int4", "float8"; with `evaluate_only`) evaluates the newest checkpoint with its backbone
    quantized after the weights are restored (`kzoo eval RUN --quantize MODE`).

    Errors the user can fix (config, data, checkpoints, an unwritable output folder) are
    printed as one line and the process exits with status 2; a diverged run exits with 3,
    a multi-worker job that lost a worker with 4; no traceback.
    """
    from kzoo.train.checkpoint import CheckpointError

    try:
        with config_warnings_as_lines(f"kzoo train {name}"):
            config = parse_arguments(name, config, argv, description)
        if quantize:
            from kzoo.recipes import adapters

            adapters.check_evaluation_quantize(getattr(config, "model", None), quantize)
        return _run(name, config, build, evaluate_only, quantize)
    except (ConfigError, CheckpointError, ValueError) as error:
        _fail(name, error, 2)
    except OSError as error:  # a file or folder the run needs (its path is in the message)
        what = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        _fail(name, f"{what}; check that the path exists and the output folder is writable", 2)


def config_warnings_as_lines(command):
    """Prints a renamed config key's FutureWarning as `<command>: warning: ...` (also when parsing then fails on
    another key); other warnings are shown as usual."""
    return warnings_as_lines(command, FutureWarning)


def _fail(name, error, status):
    print(f"kzoo train {name}: {one_line(error)}", file=sys.stderr)
    raise SystemExit(status) from None


def _run_config(name, config, files=None):
    """What the checkpoints of a recipe run depend on: the recipe, its config, the hashes of its tokenizer files."""
    recorded = {"recipe": name, **to_dict(config)}
    if files is not None:
        recorded["files"] = {basename: _sha256(path) for basename, path in sorted(files.items())}
    return recorded


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _run(name, config, build, evaluate_only, quantize=""):
    from kzoo.train.checkpoint import run_lock
    from kzoo.train.loop import check_backend, check_writable

    check_backend()  # before any file is written
    # Before anything is built or written (data, vocabulary, config.yaml): the folder must be writable, no other
    # run may be using it, and its checkpoints, if any, must have been written by this recipe with this data and
    # model. (Workers of a multi-worker job share the folder; the chief's Trainer locks it.)
    check_writable(config.train.output_dir)
    # Evaluation writes no checkpoint or history; the processes of a multi-worker (TF) or multi-host (JAX) job share
    # the folder, and the chief's Trainer locks it.
    from kzoo.train.jax_distribution import joins_hosts

    multi_process = "TF_CONFIG" in os.environ or joins_hosts(config.train.coordinator_address)
    unlocked = evaluate_only or multi_process
    with contextlib.nullcontext() if unlocked else run_lock(config.train.output_dir):
        return _run_unlocked(name, config, build, evaluate_only, quantize)


def _run_unlocked(name, config, build, evaluate_only, quantize=""):
    import keras

    from kzoo.recipes import adapters
    from kzoo.train import optimization
    from kzoo.train import strategy as strategies
    from kzoo.train.checkpoint import CheckpointManager
    from kzoo.train.loop import Trainer, TrainingDiverged

    train: TrainConfig = config.train
    checkpoints = CheckpointManager(RunDirectory(train.output_dir).checkpoints, None, None)
    if evaluate_only and not checkpoints.steps():
        raise ConfigError(f"no checkpoint under {checkpoints.directory}: train first.")
    checkpoints.check_resume("auto" if evaluate_only else train.resume, _run_config(name, config))
    strategy = strategies.resolve(train)  # first: a multi-host JAX job joins before JAX touches a device
    keras.utils.set_random_seed(train.seed)
    previous_policy = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(train.precision)
    try:
        chief = strategies.is_chief(strategy)
        worker_folder = f".worker-{strategies.task_index(strategy)}"
        workdir = train.output_dir if chief else os.path.join(train.output_dir, worker_folder)
        with strategy.scope():
            parts = build(config, workdir)
            model = parts.model
            # LoRA / a quantized base (the fine-tuning recipes' model.lora_* and model.quantize): before compile, so
            # the optimizer is built for the adapters and the task head alone.
            lora = adapters.apply_adapters(getattr(config, "model", None), model, parts.train_dataset,
                                           verbose=chief and train.verbose, command=f"kzoo train {name}")
            model.compile(optimizer=optimization.build_optimizer(train, model.trainable_variables),
                          **parts.compile_arguments)
        trainer = Trainer(model, train, strategy, parts.train_dataset, parts.eval_dataset,
                          evaluators=parts.evaluators, attention_example=parts.attention_example,
                          token_label=token_labels(parts.tokenizer),
                          output_dir=train.output_dir,
                          run_config=_run_config(name, config, {**parts.tokenizer_files, **parts.extra_files}))
        if evaluate_only:
            trainer.checkpoints.check_resume("auto", trainer.run_config)
        else:
            trainer.check_output_dir()  # e.g. the vocabulary differs from the checkpoints': before config.yaml
        if chief:
            yaml_path = write_resolved(config, train.output_dir, CONFIG_NAME, recipe=name)
            with open(yaml_path, encoding="utf-8") as file:
                trainer.summaries.config(to_dict(config), file.read())
        if chief and train.verbose:
            print(f"kzoo train {name}: {strategies.describe(strategy)}, precision {train.precision}, "
                  f"{model.count_params():,} parameters, output {train.output_dir}")
        if evaluate_only:
            restored = trainer.checkpoints.restore_latest()
            if restored is None:
                raise ConfigError(f"no checkpoint under {trainer.checkpoints.directory}: train first.")
            if quantize:  # after the float weights are restored; the eval step is traced on first use
                with strategy.scope():
                    adapters.quantize_backbone(model, quantize)
            results = trainer.evaluate()
            return {"step": restored["step"], "eval": results, "quantize": quantize or None}
        started = time.perf_counter()
        try:
            result = trainer.fit()
        except TrainingDiverged as error:
            _fail(name, error, 3)
        except strategies.WorkerLost as error:
            _fail(name, error, 4)
        result["wall_seconds"] = time.perf_counter() - started
        if chief:
            result.update(outputs.save_model_and_tokenizer(train.output_dir, model,
                                                           {**parts.tokenizer_files, **parts.extra_files}))
            if lora:
                result.update(outputs.save_adapters(train.output_dir, model), lora=lora)
            from kzoo.recipes.heldout import save_heldout_sample

            result["heldout"] = save_heldout_sample(train.output_dir, parts.eval_dataset)  # None: no held-out data
            _report(name, result)
            outputs.save_result(train.output_dir, result)
        return result
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _report(name, result):
    evaluation = ", ".join(f"{key} {value:.4g}" for key, value in result["eval"].items()
                           if isinstance(value, float) and math.isfinite(value))
    first, last, steps = result.get("first_loss"), result.get("last_loss"), result.get("loss_steps")
    if steps is None:  # set together with first_loss and last_loss (Trainer._result)
        losses = "no new steps"
    elif steps[0] == steps[1]:  # one logged step (log_every >= the steps run)
        losses = f"train loss {last:.4f} at step {steps[1]}"
    else:
        losses = f"train loss {first:.4f} (step {steps[0]}) -> {last:.4f} (step {steps[1]})"
    print(f"kzoo train {name}: {result['steps']} steps ({result['steps_this_run']} this run) in "
          f"{result['wall_seconds']:.1f}s; {losses}\n"
          f"  eval: {evaluation or 'n/a'}\n"
          f"  checkpoint: {result['checkpoint']}\n"
          f"  model: {result['model']} (tokenizer files in {result['tokenizer_dir']})\n"
          f"{_adapters_line(result)}"
          f"  TensorBoard: tensorboard --logdir {result['logdir']}")


def _adapters_line(result):
    """The report's line for the adapter file of a LoRA run (empty for a full fine-tuning)."""
    if not result.get("adapters"):
        return ""
    lora = result["lora"]
    return (f"  adapters: {result['adapters']} (LoRA rank {lora['rank']}, {lora['adapter_parameters']:,} weights; "
            f"{MODEL_FILE} has them merged)\n")
