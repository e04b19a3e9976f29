"""What a recipe run leaves behind: written by the runner when training ends, read back by `load_run`.

`save_model_and_tokenizer`, `save_adapters` and `save_result` write a run directory's `model.keras`, `tokenizer/`,
a LoRA run's `adapters.npz` and `result.json`; `load_run` reads the model, tokenizer and class names of a run
directory (or of a lone .keras file, or an imported checkpoint directory) for `kzoo export`, `kzoo generate` and
`kzoo attention`. The file names are `kzoo.run_directory`'s.
"""

import json
import os
import shutil
import typing

from kzoo.run_directory import ADAPTERS_FILE, LABELS_FILE, MODEL_FILE, TOKENIZER_DIR, RunDirectory


def save_model_and_tokenizer(output_dir, model, files):
    """Saves `model` as `<output_dir>/model.keras` and copies `files` ({basename: path}: the tokenizer's, a
    labels.json) into `<output_dir>/tokenizer/`; returns `{"model": path, "tokenizer_dir": path}`.

    The model is written under a temporary name and renamed into place: a kill while saving keeps the previous one.
    """
    run = RunDirectory(output_dir)
    partial = os.path.join(run.root, f".partial-{MODEL_FILE}")  # Keras saves only to names ending in .keras
    model.save(partial)
    os.replace(partial, run.model)
    os.makedirs(run.tokenizer, exist_ok=True)
    for basename, path in files.items():
        if os.path.abspath(path) != os.path.abspath(os.path.join(run.tokenizer, basename)):
            shutil.copyfile(path, os.path.join(run.tokenizer, basename))
    return {"model": run.model, "tokenizer_dir": run.tokenizer}


def save_adapters(output_dir, model):
    """Writes the LoRA adapters of `model` alone as `<output_dir>/adapters.npz` (`kzoo.models.lora.save_adapters`:
    the adapter weights, rank, alpha and targets; `load_adapters` applies them to a fresh copy of the base model);
    returns `{"adapters": path}`. Written under a temporary name and renamed into place, like the model."""
    from kzoo.models.lora import save_adapters as write

    run = RunDirectory(output_dir)
    partial = os.path.join(run.root, f".partial-{ADAPTERS_FILE}")
    write(model, partial)
    os.replace(partial, run.adapters)
    return {"adapters": run.adapters}


def save_result(output_dir, result):
    """Writes the final report (`Trainer.fit`'s result plus the output paths) as `<output_dir>/result.json`."""
    with open(RunDirectory(output_dir).result, "w", encoding="utf-8") as file:
        json.dump(result, file, indent=2, default=str)


class RunLoadError(ValueError):
    """A source that is not a loadable run directory or .keras file; the message names it and the fix."""


class LoadedRun(typing.NamedTuple):
    """What `load_run` returns (a tuple: `model, tokenizer, files, labels = load_run(...)`)."""

    model: object  # the kzoo task model (not compiled)
    tokenizer: object  # a kzoo tokenizer, or None when no tokenizer folder was found or given
    tokenizer_files: dict  # {basename: path} of the tokenizer's files (labels.json excluded)
    labels: list | None  # class names in id order (a classifier's or tagger's labels.json), or None


def load_run(source, tokenizer_dir=None, labels_path=None, checkpoints=False):
    """Loads `source`: a run directory (its `model.keras`, `tokenizer/` and `tokenizer/labels.json`) or a .keras file
    (or, with `checkpoints=True`, a Hugging Face checkpoint or keras-hub preset directory, through `kzoo.convert`).

    Args:
        source: a `kzoo train` output directory or a `.keras` file.
        tokenizer_dir: a folder of tokenizer files to use instead of the run's `tokenizer/` (needed for a
            .keras file that should come with a tokenizer).
        labels_path: a labels.json to use instead of the one in the tokenizer folder.
        checkpoints: also accept a checkpoint directory (`config.json` and weights, no `model.keras`): imported with
            `kzoo.convert.from_checkpoint_directory`, its tokenizer from the files beside the weights.

    Returns:
        A `LoadedRun`.

    Raises:
        RunLoadError: the source, the tokenizer folder or the labels file is missing or unreadable; the .keras
            file is refused by `kzoo.saving.load_model` (Lambda layers, foreign classes, unsafe archive members,
            sizes that disagree with its weights) before Keras loads it in safe mode.
    """
    from kzoo.convert.directory import is_checkpoint_directory  # here: kzoo.convert loads TensorFlow
    from kzoo.saving import ModelFileError, load_model

    if checkpoints and not os.path.isfile(RunDirectory(source).model) and is_checkpoint_directory(source):
        return _import_checkpoint(source, tokenizer_dir, labels_path)
    if os.path.isdir(source):
        run = RunDirectory(source)
        model_path = run.model
        if not os.path.isfile(model_path):
            raise RunLoadError(f"{source} holds no {MODEL_FILE}: pass a finished `kzoo train` run or a .keras file.")
        tokenizer_dir = tokenizer_dir or (run.tokenizer if os.path.isdir(run.tokenizer) else None)
    elif source.endswith(".keras") and os.path.isfile(source):
        model_path = source
    else:
        raise RunLoadError(f"{source} is neither a run directory nor a .keras file.")
    try:
        model = load_model(model_path, compile=False, safe_mode=True)
    except (ModelFileError, FileNotFoundError) as error:  # every refusal, Keras' too; the message names the file
        raise RunLoadError(str(error)) from error
    tokenizer, files = None, {}
    if tokenizer_dir:
        tokenizer, files = _load_tokenizer(tokenizer_dir)
        if labels_path is None and LABELS_FILE in files:
            labels_path = files[LABELS_FILE]
        files.pop(LABELS_FILE, None)
    labels = _read_labels(labels_path) if labels_path else None
    return LoadedRun(model, tokenizer, files, labels)


def _import_checkpoint(directory, tokenizer_dir, labels_path):
    from kzoo.convert import from_checkpoint_directory

    try:
        imported = from_checkpoint_directory(directory)
    except (ValueError, OSError, ImportError) as error:  # a checkpoint kzoo cannot import: the message says why
        raise RunLoadError(str(error) if directory in str(error) else f"{directory}: {error}") from error
    if tokenizer_dir:
        tokenizer, files = _load_tokenizer(tokenizer_dir)
    elif imported.tokenizer_files:
        files = dict(imported.tokenizer_files)
        tokenizer = _tokenizer(files)
    else:
        tokenizer, files = None, {}
    files.pop(LABELS_FILE, None)
    return LoadedRun(imported.model, tokenizer, files, _read_labels(labels_path) if labels_path else None)


def _load_tokenizer(folder):
    if not os.path.isdir(folder):
        raise RunLoadError(f"the tokenizer folder {folder} is not a directory (a run keeps its tokenizer in "
                           f"{TOKENIZER_DIR}/).")
    files = {name: os.path.join(folder, name) for name in sorted(os.listdir(folder))}
    files = {name: path for name, path in files.items() if os.path.isfile(path)}
    return _tokenizer(files), files


def _tokenizer(files):
    from kzoo.text import tokenizer_from_files

    try:
        return tokenizer_from_files(files)
    except ValueError as error:
        raise RunLoadError(str(error)) from error


def _read_labels(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)["labels"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunLoadError(f"{path} is not a kzoo {LABELS_FILE} ({{\"labels\": [...]}}): {error}") from error
