"""A small sample of a run's held-out examples, kept beside the model for checks that need labelled data.

`save_heldout_sample(output_dir, eval_dataset)` writes the first `limit` examples of a recipe's held-out
dataset as `<output_dir>/heldout.npz` (`kzoo.run_directory.HELDOUT_FILE`): the model inputs, the targets and
the sample weights, exactly as the recipe's evaluation feeds them to the model, so a later check scores them
the same way without the corpus, the tokenizer or the recipe. `kzoo export --format onnx --int8 --verify`
reads it to judge the int8 graphs by their task metric (`kzoo.export.onnx.quality`).

Layout: one NumPy array per leaf, keyed `inputs/<name>`, `targets` or `targets/<name>`, `sample_weights` or
`sample_weights/<name>` (a dict structure keeps its names), every array with the examples first; and
`format_version`. No pickled objects: `np.load(..., allow_pickle=False)` reads it.
"""

import os
import typing

import numpy as np

from kzoo.run_directory import RunDirectory

FORMAT_VERSION = 1
DEFAULT_LIMIT = 256
_PARTS = ("inputs", "targets", "sample_weights")


class HeldoutSample(typing.NamedTuple):
    """Held-out examples as NumPy arrays, examples first.

    inputs: {name: array (n, ...)} of the model inputs (`token_ids`, `padding_mask`, ...).
    targets: array (n, ...), {name: array}, or None: what the loss compares with (class ids, tag ids, span
        positions, masked ids, next tokens).
    sample_weights: array, {name: array}, or None: the recipe's per-position weights (e.g. 1 on each word's first
        sub-token of a tagger, 0 on padded mask slots of BERT pre-training).
    """

    inputs: dict
    targets: object = None
    sample_weights: object = None

    @property
    def size(self):
        """Number of examples."""
        return len(next(iter(self.inputs.values())))


def _leaves(prefix, value):
    """{key: array} of one structure: a dict gives `prefix/<name>` keys, an array `prefix` itself."""
    if isinstance(value, dict):
        return {f"{prefix}/{name}": np.asarray(item) for name, item in value.items()}
    return {prefix: np.asarray(value)}


def _batch_leaves(batch):
    """{key: array} of one dataset element: `inputs`, `(inputs, targets)` or `(inputs, targets, weights)`."""
    parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    if not 1 <= len(parts) <= 3 or not isinstance(parts[0], dict):
        raise ValueError("save_heldout_sample: the held-out dataset must yield (inputs dict[, targets[, sample "
                         f"weights]]) batches, got an element of {len(parts)} parts.")
    leaves = {}
    for name, part in zip(_PARTS, parts, strict=False):
        leaves.update(_leaves(name, part))
    return leaves


def save_heldout_sample(output_dir, eval_dataset, limit=DEFAULT_LIMIT):
    """Writes the first `limit` examples of `eval_dataset` as `<output_dir>/heldout.npz`.

    Args:
        output_dir: the run directory.
        eval_dataset: a `tf.data.Dataset` (or any iterable) of held-out batches, as a recipe's `eval_dataset`:
            `(inputs, targets[, sample_weights])` with an inputs dict and every tensor batch-first; or None.
        limit: int >= 1, at most this many examples are kept (fewer when the dataset is smaller).

    Returns:
        the path written, or None when `eval_dataset` is None or empty (nothing is written).

    Raises:
        ValueError: `limit` < 1, or batches that are not `(inputs dict, ...)` or whose arrays disagree on the
            number of examples.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"save_heldout_sample: limit must be an int >= 1, got {limit!r}.")
    if eval_dataset is None:
        return None
    chunks, count = {}, 0
    for batch in eval_dataset:
        leaves = _batch_leaves(batch)
        sizes = {key: value.shape[0] if value.ndim else None for key, value in leaves.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"save_heldout_sample: every array of a held-out batch must have the examples first "
                             f"(the same leading size), got {sizes}.")
        take = min(limit - count, next(iter(sizes.values())))
        for key, value in leaves.items():
            chunks.setdefault(key, []).append(value[:take])
        count += take
        if count >= limit:
            break
    if not count:
        return None
    arrays = {key: np.concatenate(values) for key, values in chunks.items()}
    path = RunDirectory(output_dir).heldout
    partial = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
    with open(partial, "wb") as handle:  # a file object: np.savez would append .npz to a name
        np.savez(handle, format_version=np.array(FORMAT_VERSION), **arrays)
    os.replace(partial, path)
    return path


def load_heldout_sample(path):
    """Reads a `save_heldout_sample` file.

    Args:
        path: a `heldout.npz` (a run directory's, or one written by `save_heldout_sample` elsewhere).

    Returns:
        a `HeldoutSample`.

    Raises:
        ValueError: the file is missing, not an .npz archive, or not in this layout (the message names it).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable held-out sample (an .npz from save_heldout_sample): "
                         f"{error}") from error
    version = arrays.pop("format_version", None)
    if version is None or int(version) != FORMAT_VERSION:
        raise ValueError(f"{path} is not a kzoo held-out sample (format_version {FORMAT_VERSION}); write one with "
                         "kzoo.recipes.heldout.save_heldout_sample.")
    parts = {}
    for key, value in arrays.items():
        part, _, name = key.partition("/")
        if part not in _PARTS:
            raise ValueError(f"{path}: unexpected entry {key!r}; a held-out sample holds {', '.join(_PARTS)}.")
        if name:
            parts.setdefault(part, {})[name] = value
        else:
            parts[part] = value
    if not isinstance(parts.get("inputs"), dict) or not parts["inputs"]:
        raise ValueError(f"{path}: no model inputs (inputs/<name> arrays) in this held-out sample.")
    sample = HeldoutSample(**parts)
    sizes = {len(value) for part in parts.values() for value in (part.values() if isinstance(part, dict) else [part])}
    if len(sizes) != 1:
        raise ValueError(f"{path}: its arrays disagree on the number of examples ({sorted(sizes)}).")
    return sample
