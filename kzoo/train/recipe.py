"""What every recipe shares: command line, set-up, training or evaluation, the final report.

A recipe module defines a config dataclass (sections `model`, `data`, `train`) and
`build(config, workdir) -> RecipeParts`; its `main(argv)` calls `run_recipe`. The
runner parses `--config FILE.yaml` and dotted overrides, seeds everything, sets the
precision policy, resolves the strategy, calls `build` under `strategy.scope()`,
compiles with the kzoo optimizer, writes the resolved config beside the checkpoints
and into TensorBoard, trains (resuming from the newest checkpoint in the output
directory, if any), saves `<output_dir>/model.keras` and the tokenizer files, and
prints where everything is.
"""

import dataclasses
import json
import math
import os
import shutil
import sys
import time

from kzoo.train.config import ConfigError, TrainConfig, describe, parse_command_line, to_dict, write_resolved


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
    return config


def run_recipe(name, config, build, argv=None, description="", evaluate_only=False):
    """Parses `argv` onto `config`, then trains (or only evaluates); returns the result dict.

    Errors the user can fix (config, data, checkpoints) are printed as one line and the
    process exits with status 2; no traceback.
    """
    try:
        config = parse_arguments(name, config, argv, description)
        return _run(name, config, build, evaluate_only)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"kzoo train {name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(name, config, build, evaluate_only):
    import keras

    from kzoo.train import optimization
    from kzoo.train import strategy as strategies
    from kzoo.train.loop import Trainer, TrainingDiverged

    train: TrainConfig = config.train
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
                          output_dir=train.output_dir)
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
            print(f"kzoo train {name}: {error}", file=sys.stderr)
            raise SystemExit(3) from None
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
    model.save(model_path)
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
        texts: training strings for the vocabulary (used only when training one).
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
    folder = os.path.join(workdir, "vocab", f"{kind}-{vocabulary_size}")  # a new kind or size trains anew
    target = "vocab.txt" if kind == "wordpiece" else "spiece.model"
    path = os.path.join(folder, target)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        corpus_file = os.path.join(folder, "corpus.txt")
        with open(corpus_file, "w", encoding="utf-8") as file:
            file.write("\n".join(text.replace("\n", " ") for text in texts) + "\n")
        if kind == "wordpiece":
            train_wordpiece([corpus_file], vocabulary_size, folder)
        else:
            model_type = "unigram" if kind == "sentencepiece_unigram" else "bpe"
            train_sentencepiece([corpus_file], vocabulary_size, folder, model_type=model_type)
        os.remove(corpus_file)
    files = {target: path}
    return tokenizer_from_files(files), files


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
    train, _ = data.read_csv(paths, columns)
    held_out = data.read_csv(eval_paths, columns)[0] if eval_paths else None
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
