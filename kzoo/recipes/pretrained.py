"""The trained model a fine-tuning recipe starts from (`--model.checkpoint=PATH`), and its tokenizer.

One loader for every fine-tuning recipe (`gpt_finetune`, the BERT task recipes, the seq2seq recipes), so they accept
the same sources and refuse the same mistakes with the same one-line `ConfigError`:

    a kzoo .keras file          through `kzoo.saving.load_model` (its checks, then Keras' safe mode); the tokenizer
                                files are those of the `tokenizer/` folder beside it, as every `kzoo train` run saves
                                them (`runs/bert_pretrain/model.keras` -> `runs/bert_pretrain/tokenizer/`)
    a Hugging Face checkpoint   a folder with `config.json` and the weights (`kzoo.convert.from_checkpoint_directory`
    or keras-hub preset folder  tells the two apart); the tokenizer files are those found beside the weights

`--data.tokenizer_dir` replaces the checkpoint's tokenizer files. The loader checks what would otherwise fail deep
inside the first step or train nonsense: the checkpoint's family (a GPT checkpoint for a BERT recipe), that the
tokenizer's ids fit the model's embedding, and that the recipe's sequence lengths fit the model's learned positions.
The architecture (sizes, dropout) comes with the checkpoint, so `--model.overrides` is refused beside it.
"""

import dataclasses
import os

from kzoo.messages import one_line
from kzoo.run_directory import LABELS_FILE, RunDirectory
from kzoo.train.config import ConfigError

FAMILIES = ("bert", "gpt", "seq2seq")


@dataclasses.dataclass
class Pretrained:
    """A trained model to fine-tune and the tokenizer that goes with it.

    Attributes:
        model: the kzoo model as the checkpoint holds it: a task model (`BertPretrainer`, `BertClassifier`,
            `GPTCausalLM`, `Seq2SeqLM`, ...) or a backbone alone (a Hugging Face `BertModel`, a keras-hub preset).
        tokenizer: the kzoo tokenizer of `tokenizer_files`.
        tokenizer_files: `{basename: path}` of the tokenizer's files (a run's labels.json left out), copied beside
            the fine-tuned model.
        path: the checkpoint's path.
    """

    model: object
    tokenizer: object
    tokenizer_files: dict
    path: str

    @property
    def backbone(self):
        """The backbone whose weights are fine-tuned (`model` itself when the checkpoint holds a backbone)."""
        from kzoo.models.backbone import backbone_of

        return backbone_of(self.model)


def files_in(folder):
    """`{basename: path}` of the files in a tokenizer folder (a classifier's or tagger's labels.json left out: the
    labels belong to the old task)."""
    if not os.path.isdir(folder):
        raise ConfigError(f"no tokenizer folder {folder!r}: pass one with --data.tokenizer_dir.")
    names = sorted(name for name in os.listdir(folder) if name != LABELS_FILE)
    return {name: os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))}


def load_pretrained(path, family, tokenizer_dir="", exact_vocabulary=True, **sequence_lengths):
    """Loads the checkpoint at `path` and its tokenizer, and checks that the recipe can fine-tune them.

    Args:
        path: a kzoo `.keras` file, or a Hugging Face checkpoint or keras-hub preset directory.
        family: "bert", "gpt" or "seq2seq": the recipe's; a checkpoint of another family is refused.
        tokenizer_dir: a folder of tokenizer files to use instead of the checkpoint's ("": the checkpoint's).
        exact_vocabulary: the tokenizer must have exactly as many ids as the model's embedding has rows; False
            allows fewer (T5 pads its embedding beyond its SentencePiece pieces: 32,128 rows for 32,000 pieces).
        **sequence_lengths: the recipe's `data` keys and their values (`sequence_length=128`); each must fit the
            model's positions (`kzoo.models.backbone.position_limit`; relative/rotary positions fit any length).

    Returns:
        A `Pretrained`.

    Raises:
        ConfigError: one line naming the path and the fix: no such file, a file or directory that is not a
            checkpoint or that kzoo refuses to load, another family, no tokenizer files, a tokenizer that does not fit
            the model's vocabulary, a sequence length beyond the model's positions.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    model, files = _load_model(path, family)
    _check_family(model, path, family)
    if tokenizer_dir or files is None:  # a .keras file: the run's tokenizer/ beside it
        files = files_in(tokenizer_dir or RunDirectory(os.path.dirname(path)).tokenizer)
    pretrained = Pretrained(model, _tokenizer(files, path, tokenizer_dir), files, path)
    _check_vocabulary(pretrained, exact_vocabulary)
    _check_positions(pretrained, sequence_lengths)
    return pretrained


def pretrained_start(model_config, family, tokenizer_dir="", exact_vocabulary=True, **sequence_lengths):
    """The checkpoint a BERT or seq2seq recipe fine-tunes (`load_pretrained`), or None without `--model.checkpoint`
    (the recipe then builds `--model.preset` with random weights and trains a vocabulary).

    Args:
        model_config: the recipe's `model` section (`kzoo.recipes.FineTuningModelConfig`).
        family, tokenizer_dir, exact_vocabulary, sequence_lengths: as for `load_pretrained`.
    """
    if not model_config.checkpoint:
        return None
    if model_config.overrides:
        raise ConfigError(f"--model.overrides={model_config.overrides!r} cannot change a checkpoint's architecture "
                          f"(model.checkpoint {model_config.checkpoint!r}): drop --model.overrides, or drop "
                          "--model.checkpoint to train a preset from random weights.")
    return load_pretrained(model_config.checkpoint, family, tokenizer_dir, exact_vocabulary, **sequence_lengths)


def _load_model(path, family):
    """`(model, tokenizer files or None)`: None for a .keras file, whose tokenizer is the run's folder beside it."""
    from kzoo import saving
    from kzoo.convert import from_checkpoint_directory, is_checkpoint_directory

    if not os.path.exists(path):
        raise ConfigError(f"model.checkpoint {path!r} does not exist: pass a kzoo .keras file, or a Hugging Face "
                          "checkpoint or keras-hub preset directory.")
    try:
        if os.path.isfile(path) and path.endswith(".keras"):
            # kzoo's one loading path: any refusal (kzoo's checks or Keras') is a one-line ModelFileError
            return saving.load_model(path, compile=False), None
        if is_checkpoint_directory(path):
            imported = from_checkpoint_directory(path, family=family)
            return imported.model, dict(imported.tokenizer_files)
    except (ValueError, OSError, ImportError) as error:  # a checkpoint the user can replace: one line, exit 2
        message = one_line(error)
        raise ConfigError(message if path in message else f"model.checkpoint {path}: {message}") from error
    raise ConfigError(f"model.checkpoint {path!r} is neither a .keras file nor a directory with config.json.")


def _check_family(model, path, family):
    from kzoo import models

    backbones = {"bert": models.BertBackbone, "gpt": models.GPTBackbone, "seq2seq": models.Seq2SeqBackbone}
    backbone = model if isinstance(model, models.Backbone) else getattr(model, "backbone", None)
    if not isinstance(model, (models.Backbone, models.Task)) or not isinstance(backbone, backbones[family]):
        found = next((name for name, cls in backbones.items() if isinstance(backbone, cls)), None)
        held = f"a {type(model).__name__}" + (f" ({found} family)" if found else "")
        raise ConfigError(f"model.checkpoint {path!r} holds {held}, not a {family} model: pass a {family} checkpoint.")


def _tokenizer(files, path, tokenizer_dir):
    from kzoo.text import tokenizer_from_files

    where = f"data.tokenizer_dir {tokenizer_dir!r}" if tokenizer_dir else f"model.checkpoint {path!r}"
    if not files:
        raise ConfigError(f"{where} has no tokenizer files: copy the checkpoint's vocabulary files beside it, or "
                          "pass them with --data.tokenizer_dir.")
    try:
        return tokenizer_from_files(files)
    except ValueError as error:
        raise ConfigError(f"{where}: {one_line(error)}") from error


def _check_vocabulary(pretrained, exact):
    tokens, rows = pretrained.tokenizer.vocabulary_size, pretrained.backbone.vocabulary_size
    if tokens > rows or (exact and tokens != rows):
        raise ConfigError(f"the tokenizer ({tokens} ids) does not fit the model of model.checkpoint "
                          f"{pretrained.path!r} ({rows} ids): pass the checkpoint's own with --data.tokenizer_dir.")


def _check_positions(pretrained, sequence_lengths):
    from kzoo.models.backbone import position_limit

    limit = position_limit(pretrained.model)
    for key, length in sequence_lengths.items():
        if limit is not None and length > limit:
            raise ConfigError(f"data.{key}={length} exceeds the {limit} positions of model.checkpoint "
                              f"{pretrained.path!r}: pass --data.{key}={limit} or less.")
