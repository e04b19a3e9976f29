"""What every recipe shares: command line, set-up, training or evaluation, the final report.

A recipe module defines a config dataclass (sections `model`, `data`, `train`) and
`build(config, workdir) -> RecipeParts`; its `main(argv)` calls `run_recipe`. The
runner parses `--config FILE.yaml` and dotted overrides, seeds everything, sets the
precision policy, resolves the strategy, calls `build` under `strategy.scope()`,
compiles with the kzoo optimizer, writes the resolved config beside the checkpoints
and into TensorBoard, trains (resuming from the newest checkpoint in the output
directory, if any), saves `<output_dir>/model.keras` and the tokenizer files, and
prints where everything is.

Resuming (`--train.resume`, default `auto`) is checked before anything is built or
written: every checkpoint records the run's config and the hashes of its tokenizer
files, and a folder whose checkpoints were written with other data or another model
is refused with the differing keys named (`CheckpointManager.check_resume`).
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time

from kzoo.train.config import (
    ConfigError,
    TrainConfig,
    check_types,
    describe,
    parse_command_line,
    to_dict,
    write_resolved,
)


@dataclasses.dataclass
class ModelConfig:
    """Which model: a kzoo preset, its dropout, and optional size overrides.

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
        attention_example: one example's inputs for the attention-map image, or None.
        tokenizer_files: `{basename: path}` copied next to the saved model.
        extra_files: `{basename: path}` also copied (e.g. a label vocabulary).
        compile_arguments: extra `model.compile` arguments (loss weights, metrics).
    """

    model: object
    train_dataset: object
    eval_dataset: object = None
    evaluators: list = dataclasses.field(default_factory=list)
    attention_example: dict | None = None
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
    train.output_dir = train.output_dir or os.path.join("runs", name)
    train.validate()
    for field in dataclasses.fields(config):  # the model and data sections: types, finite floats
        section = getattr(config, field.name)
        if dataclasses.is_dataclass(section) and section is not train:
            check_types(section, f"{field.name}.")
    return config


def run_recipe(name, config, build, argv=None, description="", evaluate_only=False):
    """Parses `argv` onto `config`, then trains (or only evaluates); returns the result dict.

    Errors the user can fix (config, data, checkpoints, an unwritable output folder) are
    printed as one line and the process exits with status 2; a diverged run exits with 3,
    a multi-worker job that lost a worker with 4; no traceback.
    """
    from kzoo.train.checkpoint import CheckpointError

    try:
        config = parse_arguments(name, config, argv, description)
        return _run(name, config, build, evaluate_only)
    except (ConfigError, CheckpointError, ValueError) as error:
        _fail(name, error, 2)
    except OSError as error:  # a file or folder the run needs (its path is in the message)
        what = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        _fail(name, f"{what}; check that the path exists and the output folder is writable", 2)


def _fail(name, error, status):
    print(f"kzoo train {name}: {' '.join(str(error).split())}", file=sys.stderr)  # one line
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


def _run(name, config, build, evaluate_only):
    from kzoo.train.checkpoint import run_lock
    from kzoo.train.loop import check_writable

    # Before anything is built or written (data, vocabulary, config.yaml): the folder must be writable, no other
    # run may be using it, and its checkpoints, if any, must have been written by this recipe with this data and
    # model. (Workers of a multi-worker job share the folder; the chief's Trainer locks it.)
    check_writable(config.train.output_dir)
    unlocked = evaluate_only or "TF_CONFIG" in os.environ  # evaluation writes no checkpoint or history
    with contextlib.nullcontext() if unlocked else run_lock(config.train.output_dir):
        return _run_unlocked(name, config, build, evaluate_only)


def _run_unlocked(name, config, build, evaluate_only):
    import keras

    from kzoo.train import optimization
    from kzoo.train import strategy as strategies
    from kzoo.train.checkpoint import CheckpointManager
    from kzoo.train.loop import Trainer, TrainingDiverged

    train: TrainConfig = config.train
    checkpoints = CheckpointManager(os.path.join(train.output_dir, "checkpoints"), None, None)
    if evaluate_only and not checkpoints.steps():
        raise ConfigError(f"no checkpoint under {checkpoints.directory}: train first.")
    checkpoints.check_resume("auto" if evaluate_only else train.resume, _run_config(name, config))
    keras.utils.set_random_seed(train.seed)
    previous_policy = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(train.precision)
    try:
        strategy = strategies.resolve_strategy(train.strategy, train.devices, train.tpu)
        chief = strategies.is_chief(strategy)
        workdir = train.output_dir if chief else os.path.join(train.output_dir, f".worker-{_task_id(strategy)}")
        with strategy.scope():
            parts = build(config, workdir)
            model = parts.model
            model.compile(optimizer=optimization.build_optimizer(train, model.trainable_variables),
                          **parts.compile_arguments)
        trainer = Trainer(model, train, strategy, parts.train_dataset, parts.eval_dataset,
                          evaluators=parts.evaluators, attention_example=parts.attention_example,
                          output_dir=train.output_dir,
                          run_config=_run_config(name, config, {**parts.tokenizer_files, **parts.extra_files}))
        if evaluate_only:
            trainer.checkpoints.check_resume("auto", trainer.run_config)
        else:
            trainer.check_output_dir()  # e.g. the vocabulary differs from the checkpoints': before config.yaml
        if chief:
            yaml_path = write_resolved(config, train.output_dir, recipe=name)
            with open(yaml_path, encoding="utf-8") as file:
                trainer.summaries.config(to_dict(config), file.read())
        if chief and train.verbose:
            print(f"kzoo train {name}: {strategies.describe(strategy)}, precision {train.precision}, "
                  f"{model.count_params():,} parameters, output {train.output_dir}")
        if evaluate_only:
            restored = trainer.checkpoints.restore_latest()
            if restored is None:
                raise ConfigError(f"no checkpoint under {trainer.checkpoints.directory}: train first.")
            results = trainer.evaluate()
            return {"step": restored["step"], "eval": results}
        started = time.perf_counter()
        try:
            result = trainer.fit()
        except TrainingDiverged as error:
            _fail(name, error, 3)
        except strategies.WorkerLost as error:
            _fail(name, error, 4)
        result["wall_seconds"] = time.perf_counter() - started
        if chief:
            result.update(_save_outputs(train.output_dir, model, parts))
            _report(name, result)
        return result
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _task_id(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", 0) or 0


def _save_outputs(output_dir, model, parts):
    """`model.keras` and a `tokenizer/` folder beside it; returns their paths."""
    model_path = os.path.join(output_dir, "model.keras")
    partial = os.path.join(output_dir, ".partial-model.keras")  # a kill while saving keeps the previous model
    model.save(partial)
    os.replace(partial, model_path)
    files_dir = os.path.join(output_dir, "tokenizer")
    os.makedirs(files_dir, exist_ok=True)
    for basename, path in {**parts.tokenizer_files, **parts.extra_files}.items():
        if os.path.abspath(path) != os.path.abspath(os.path.join(files_dir, basename)):
            shutil.copyfile(path, os.path.join(files_dir, basename))
    return {"model": model_path, "tokenizer_dir": files_dir}


def _report(name, result):
    evaluation = ", ".join(f"{key} {value:.4g}" for key, value in result["eval"].items()
                           if isinstance(value, float) and math.isfinite(value))
    first, last = result.get("first_loss"), result.get("last_loss")
    losses = f"train loss {first:.4f} -> {last:.4f}" if first is not None and last is not None else "no new steps"
    print(f"kzoo train {name}: {result['steps']} steps ({result['steps_this_run']} this run) in "
          f"{result['wall_seconds']:.1f}s; {losses}\n"
          f"  eval: {evaluation or 'n/a'}\n"
          f"  checkpoint: {result['checkpoint']}\n"
          f"  model: {result['model']} (tokenizer files in {result['tokenizer_dir']})\n"
          f"  TensorBoard: tensorboard --logdir {result['logdir']}")
    with open(os.path.join(os.path.dirname(result["model"]), "result.json"), "w", encoding="utf-8") as file:
        json.dump(result, file, indent=2, default=str)


# --- data helpers shared by the recipes --------------------------------------------------------------


def default_corpus(task, workdir, seed=0, size=None):
    """Writes the offline default corpus of `task` under `<workdir>/data` (deterministic); returns its paths."""
    from kzoo.data import corpora

    return corpora.write_default_corpus(task, os.path.join(workdir, "data"), seed=seed, size=size)


def prepare_tokenizer(kind, texts, vocabulary_size, workdir, tokenizer_dir=""):
    """A tokenizer from `tokenizer_dir` (user files), else one trained on `texts` (cached in `<workdir>/vocab`).

    Args:
        kind: "wordpiece" (BERT) or "sentencepiece" (GPT, T5; BPE pieces for GPT, unigram for T5
            is chosen by `kind="sentencepiece_unigram"`).
        texts: training strings for the vocabulary (used only when training one), of any length (a
            line too long for the sentencepiece trainer is given to it in pieces cut at spaces).
        vocabulary_size: size of a trained vocabulary.
        tokenizer_dir: a folder with `vocab.txt`, `spiece.model` or `vocab.json` + `merges.txt`
            (e.g. an imported checkpoint's); empty to train one.

    Returns:
        `(tokenizer, {basename: path})`.
    """
    from kzoo.text import tokenizer_from_files, train_sentencepiece, train_wordpiece

    if tokenizer_dir:
        if not os.path.isdir(tokenizer_dir):
            raise ConfigError(f"data.tokenizer_dir {tokenizer_dir!r} is not a directory.")
        files = {name: os.path.join(tokenizer_dir, name) for name in os.listdir(tokenizer_dir)}
        return tokenizer_from_files(files), files
    corpus = "\n".join(text.replace("\n", " ") for text in texts) + "\n"
    # A new kind, size or training text trains anew, in its own folder: a run folder reused with other data never
    # picks up the old vocabulary, and the old one (which older checkpoints need) is kept.
    digest = hashlib.sha256(corpus.encode("utf-8")).hexdigest()[:12]
    folder = os.path.join(workdir, "vocab", f"{kind}-{vocabulary_size}-{digest}")
    target = "vocab.txt" if kind == "wordpiece" else "spiece.model"
    path = os.path.join(folder, target)
    if not os.path.exists(path):
        # Trained in a temporary folder renamed into place when complete: a kill mid-training leaves no
        # half-written vocabulary that a later run would trust.
        staging = f"{folder}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        corpus_file = os.path.join(staging, "corpus.txt")
        with open(corpus_file, "w", encoding="utf-8") as file:
            file.write(corpus)
        if kind == "wordpiece":
            train_wordpiece([corpus_file], vocabulary_size, staging)
        else:
            model_type = "unigram" if kind == "sentencepiece_unigram" else "bpe"
            train_sentencepiece([corpus_file], vocabulary_size, staging, model_type=model_type)
        os.remove(corpus_file)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (no vocabulary file) left by older versions
        os.replace(staging, folder)
    files = {target: path}
    return tokenizer_from_files(files), files


def report_reading(name, what, report):
    """Prints, one line each, what a `kzoo.data` reader skipped in the `what` data (e.g. lines that are not UTF-8).

    Example: `kzoo train bert_classify: training data: skipped 3 of 120 lines that are not UTF-8 text in x.csv`.
    """
    for message in report.messages():
        print(f"kzoo train {name}: {what}: {message}", file=sys.stderr)


def require_filled(records, keys, names):
    """Raises naming file and line (records read `with_location=True`) if a record's `keys` cell is blank.

    A blank label would become a class of its own, a blank target would teach "stop at once": both silently.
    `names` maps each key to the column name the user gave.
    """
    from kzoo.data.readers import LOCATION

    for number, record in enumerate(records, start=1):
        for key in keys:
            if key in record and not str(record[key]).strip():
                where = record.get(LOCATION, f"record {number}")
                raise ValueError(f"{where}: the {names[key]!r} cell is empty; fill it or remove the row.")
    return records


def split_holdout(items, every=10):
    """Deterministic split: every `every`-th item is held out. Returns `(train, held_out)`."""
    train = [item for index, item in enumerate(items) if index % every != every - 1]
    held_out = [item for index, item in enumerate(items) if index % every == every - 1]
    return train, held_out


def perplexity(model, results):
    """Evaluator: perplexity from the held-out mean cross-entropy."""
    if "loss" not in results:
        return {}
    return {"perplexity": math.exp(min(results["loss"], 50.0))}


def sample_generations(prompts, tokenizer, max_new_tokens=24, name="samples"):
    """Evaluator: greedy continuations of fixed `prompts`, logged as one markdown text."""

    def evaluate(model, results):
        outputs = model.generate(list(prompts), tokenizer=tokenizer, max_new_tokens=max_new_tokens)
        lines = [f"* **{prompt}** {output}" for prompt, output in zip(prompts, outputs, strict=True)]
        return {name: "\n".join(lines)}

    return evaluate


def read_text_pairs(task, data_config, workdir):
    """(train, held-out) lists of (source, target) strings for the seq2seq recipes.

    Reads `data_config.train_files` / `eval_files` (csv/tsv with a header; columns
    `source_column` / `target_column`), or the offline default corpus of `task` with its
    test split; user data without eval files holds out every tenth pair.
    """
    from kzoo import data

    columns = {"source": data_config.source_column, "target": data_config.target_column}
    paths = data_config.train_files.split(",") if data_config.train_files else None
    eval_paths = data_config.eval_files.split(",") if data_config.eval_files else None
    if paths is None:
        corpus = default_corpus(task, workdir)
        paths, eval_paths = [corpus["train"]], eval_paths or [corpus["test"]]
    recipe = {"translation": "seq2seq_translate", "summarization": "seq2seq_summarize"}.get(task, task)
    train, report = data.read_csv(paths, columns, with_location=True)
    report_reading(recipe, "training data", report)
    require_filled(train, columns, columns)
    held_out = None
    if eval_paths:
        held_out, report = data.read_csv(eval_paths, columns, with_location=True)
        report_reading(recipe, "held-out data", report)
        require_filled(held_out, columns, columns)
    if held_out is None:
        train, held_out = split_holdout(train)
    if not train or not held_out:
        raise ValueError(f"no source/target pairs found in {paths}: pass --data.train_files with csv/tsv files.")
    return [(r["source"], r["target"]) for r in train], [(r["source"], r["target"]) for r in held_out]


def greedy_seq2seq_evaluator(pairs, tokenizer, source_length, target_length, score):
    """Evaluator: greedy outputs for the sources of `pairs` (one compiled batch), scored by `score`.

    `score(hypotheses, references) -> dict of floats`; a few (source, output, reference)
    triples are returned as the `samples` text.
    """
    import numpy as np

    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    packed = tokenizer.encode(sources, max_length=source_length)  # truncated like the training data
    prompts = {"encoder_token_ids": np.asarray(packed["token_ids"]),
               "encoder_padding_mask": np.asarray(packed["padding_mask"])}
    eos = tokenizer.special_token_ids["eos"]

    def evaluate(model, results):
        ids = model.generate(prompts, max_new_tokens=target_length, stop_token_ids=[eos], pad_id=tokenizer.pad_id)
        rows = [[int(i) for i in row] for row in ids]
        rows = [row[:row.index(eos)] if eos in row else row for row in rows]  # cut at the end token
        hypotheses = [text.decode("utf-8") for text in tokenizer.detokenize(rows).numpy()]
        samples = [f"{s}  \n→ {h}  \n(reference: {r})" for s, h, r in zip(sources, hypotheses, references, strict=True)]
        return {**score(hypotheses, references), "samples": "\n\n".join(samples[:5])}

    return evaluate
