"""The files and folders of a `kzoo train` run directory: the one place their names are spelled.

    runs/<recipe>/
        model.keras           the trained task model (written last, atomically; a LoRA run's adapters merged)
        adapters.npz          a LoRA run's adapter weights alone (`kzoo.models.lora.load_adapters` applies them)
        tokenizer/            the tokenizer files, and labels.json for a classifier or tagger
        config.yaml, .json    the resolved recipe config (`kzoo eval` reads it back)
        result.json           the final report: steps, losses, eval metrics, paths
        heldout.npz           the first held-out examples (inputs, targets, weights) for later checks
        history.jsonl         one JSON record per logged step
        checkpoints/step-N/   what an exact resume needs
        logs/                 TensorBoard event files
        .lock                 held by the process training into the folder
        vocab/, data/         a trained vocabulary and the offline default corpus, when the recipe made them

The training loop (`kzoo.train`) writes `history.jsonl`, `checkpoints/`, `logs/` and holds `.lock`; the
recipe runner (`kzoo.recipes`) writes `config.yaml`, `model.keras`, `adapters.npz`, `tokenizer/`, `heldout.npz` and
`result.json`, and `kzoo.recipes.outputs.load_run` reads a finished run back for `kzoo export` and
`kzoo generate`; `kzoo eval` reads `config.yaml`. Every one of them asks a `RunDirectory` for the path.

This module imports nothing from kzoo, so any package may use it.
"""

import dataclasses
import os

RUNS_FOLDER = "runs"  # `kzoo train NAME` writes to runs/NAME unless --train.output_dir says otherwise
MODEL_FILE = "model.keras"
ADAPTERS_FILE = "adapters.npz"  # a LoRA run's adapters alone, beside the merged model.keras
TOKENIZER_DIR = "tokenizer"
LABELS_FILE = "labels.json"  # in tokenizer/ of a classifier or tagger run; beside an export's model too
CONFIG_NAME = "config"  # config.yaml (read back by `kzoo eval`) and config.json
RESULT_FILE = "result.json"
HELDOUT_FILE = "heldout.npz"  # `kzoo.recipes.heldout`: read by `kzoo export --int8 --verify`
HISTORY_FILE = "history.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
LOCK_FILE = ".lock"  # held (flock) by the process training into the folder
VOCABULARY_DIR = "vocab"
DATA_DIR = "data"


def _inside(*names):
    """A `RunDirectory` property: the path of `names` under its root."""
    return property(lambda run: os.path.join(run.root, *names), doc=f"`<root>/{'/'.join(names)}`")


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """Paths inside one run directory `root` (nothing is created or checked).

    Example:
        >>> run = RunDirectory("runs/bert_classify")
        >>> run.model        # 'runs/bert_classify/model.keras'
        >>> run.labels       # 'runs/bert_classify/tokenizer/labels.json'
    """

    root: str

    model = _inside(MODEL_FILE)
    adapters = _inside(ADAPTERS_FILE)
    tokenizer = _inside(TOKENIZER_DIR)
    labels = _inside(TOKENIZER_DIR, LABELS_FILE)
    config = _inside(f"{CONFIG_NAME}.yaml")
    result = _inside(RESULT_FILE)
    heldout = _inside(HELDOUT_FILE)
    history = _inside(HISTORY_FILE)
    checkpoints = _inside(CHECKPOINTS_DIR)
    logs = _inside(LOGS_DIR)
    lock = _inside(LOCK_FILE)
    vocabularies = _inside(VOCABULARY_DIR)
    data = _inside(DATA_DIR)

    @classmethod
    def default(cls, recipe):
        """The run directory `kzoo train <recipe>` uses when no `--train.output_dir` is given: `runs/<recipe>`."""
        return cls(os.path.join(RUNS_FOLDER, recipe))
