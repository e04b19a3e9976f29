"""What `kzoo export` exports: a trained model loaded from a recipe's run directory or a .keras file.

A run directory holds `model.keras` and `tokenizer/` (with `labels.json` for a classifier or tagger).
"""

import json
import os

RUN_MODEL = "model.keras"
RUN_TOKENIZER = "tokenizer"
LABELS_FILE = "labels.json"


class SourceError(ValueError):
    """A source that is not a loadable run directory or .keras file; the message names it and the fix."""


def load_source(source, tokenizer_dir=None, labels_path=None):
    """`(model, tokenizer or None, tokenizer files, labels or None)` from a run directory or a .keras file.

    The .keras file is checked by `kzoo.saving.load_model` (no Lambda layers, foreign classes or unsafe
    archive members) and then loaded with Keras' safe mode.
    """
    from kzoo.saving import ModelFileError, load_model

    if os.path.isdir(source):
        model_path = os.path.join(source, RUN_MODEL)
        if not os.path.isfile(model_path):
            raise SourceError(f"{source} holds no {RUN_MODEL}: pass a finished `kzoo train` run or a .keras file.")
        default_tokenizer = os.path.join(source, RUN_TOKENIZER)
        tokenizer_dir = tokenizer_dir or (default_tokenizer if os.path.isdir(default_tokenizer) else None)
    elif source.endswith(".keras") and os.path.isfile(source):
        model_path = source
    else:
        raise SourceError(f"{source} is neither a run directory nor a .keras file.")
    try:
        model = load_model(model_path, compile=False, safe_mode=True)
    except (ModelFileError, FileNotFoundError) as error:  # every refusal, Keras' too; the message names the file
        raise SourceError(str(error)) from error
    tokenizer, files = None, {}
    if tokenizer_dir:
        from kzoo.text import tokenizer_from_files

        if not os.path.isdir(tokenizer_dir):
            raise SourceError(f"--tokenizer-dir {tokenizer_dir} is not a directory.")
        files = {name: os.path.join(tokenizer_dir, name) for name in sorted(os.listdir(tokenizer_dir))}
        files = {name: path for name, path in files.items() if os.path.isfile(path)}
        try:
            tokenizer = tokenizer_from_files(files)
        except ValueError as error:
            raise SourceError(str(error)) from error
        if labels_path is None and LABELS_FILE in files:
            labels_path = files[LABELS_FILE]
        files.pop(LABELS_FILE, None)
    labels = None
    if labels_path:
        try:
            with open(labels_path, encoding="utf-8") as handle:
                labels = json.load(handle)["labels"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SourceError(f"{labels_path} is not a kzoo labels.json ({{\"labels\": [...]}}): {error}") from error
    return model, tokenizer, files, labels
