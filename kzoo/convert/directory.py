"""Which importer reads a checkpoint directory: the one place kzoo tells a keras-hub preset from a Hugging Face
checkpoint (`kzoo convert`, `gpt_finetune`'s `--model.checkpoint`, and every command that loads a model source
through `kzoo.recipes.outputs.load_run`)."""

import json
import os


def is_checkpoint_directory(path):
    """True for a folder with a `config.json` (a Hugging Face checkpoint or a keras-hub preset)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def is_keras_hub_preset(directory):
    """keras-hub presets name a Keras class in config.json; Hugging Face checkpoints a model_type."""
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):
        return False  # the Hugging Face importer then reports what is wrong with the directory
    return isinstance(config, dict) and "class_name" in config and "model_type" not in config


def from_checkpoint_directory(directory, family=None, allow_pickle=False, dtype=None):
    """`kzoo.convert.ImportedModel` from a local keras-hub preset or Hugging Face checkpoint directory.

    Args:
        directory: the checkpoint folder (`config.json` and its weights).
        family: optional "bert", "gpt" or "seq2seq"; a checkpoint of another family raises ValueError.
        allow_pickle: Hugging Face only: also read `pytorch_model.bin` (pickle: it can run code).
        dtype: the dtype policy of the built model.
    """
    from kzoo.convert.huggingface import from_huggingface
    from kzoo.convert.keras_hub import from_keras_hub

    if is_keras_hub_preset(directory):
        return from_keras_hub(directory, family=family, dtype=dtype)
    return from_huggingface(directory, family=family, allow_pickle=allow_pickle, dtype=dtype)
