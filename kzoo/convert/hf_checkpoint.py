"""Reading Hugging Face checkpoints from a local directory, architecture-independent.

This module knows nothing about BERT, GPT-2 or T5. It

  * reads a checkpoint directory (`config.json`, the weights, tokenizer files)
    into plain Python and NumPy objects (`read_hf_checkpoint`); safetensors
    weights are read lazily, one tensor when a converter takes it, so that an
    import never holds the whole checkpoint beside the model it fills;
  * gives per-architecture converters a `WeightReader` that records which
    checkpoint tensors were used, so that no weight is ever skipped silently;
  * offers `assign` (shape-checked variable assignment) and the small layout
    helpers every converter needs (`linear_to_kernel`, `split_heads_in`,
    `merge_heads_out`);
  * checks the other direction too (`recording_assignments` / `check_all_assigned`):
    every weight of the built kzoo model must have received a checkpoint value, so a
    part that is built but not in the file is an error, never a random initial value.

Nothing is ever downloaded: the directory must already exist locally (for
example one made with `save_pretrained`, or a snapshot of a Hub repository).

Weights are read from safetensors files by default (headers parsed and checked
up front, tensor bytes read with plain file reads on demand: not through the
`safetensors` package's `safe_open`, whose memory map keeps every page it has
read resident in the process until the file is closed, which for a whole
checkpoint is a second copy of it in the peak RSS). PyTorch `.bin`
files are pickles, which can run arbitrary code when loaded, so they are only
read when the caller passes `allow_pickle=True`; they are loaded whole.
"""

import contextlib
import contextvars
import dataclasses
import difflib
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping

import numpy as np

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PYTORCH_INDEX_FILE = "pytorch_model.bin.index.json"
# In order of preference.
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, PYTORCH_FILE, PYTORCH_INDEX_FILE)

TOKENIZER_FILES = (
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "source.spm",
    "target.spm",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

# At most this many close matches are suggested for a missing weight name.
_MAX_SUGGESTIONS = 10


@dataclasses.dataclass
class HFCheckpoint:
    """A Hugging Face checkpoint directory: its config, its tensors and its tokenizer files.

    Attributes:
        directory: Absolute path of the checkpoint directory.
        config: The parsed `config.json`.
        weights: Every tensor of the checkpoint by its exact name in the file,
            a read-only mapping. Floating-point tensors (float64/32/16, bfloat16,
            float8) are float32 NumPy arrays; integer and boolean tensors (rare
            buffers) keep their dtype. For safetensors files it is a lazy
            `SafetensorsWeights`: each access reads that one tensor from disk
            and keeps nothing; for `.bin` pickles a dict loaded up front.
            Weights that Hugging Face ties (e.g. an LM head sharing the word
            embeddings) are often stored only once; they are returned exactly
            as stored, nothing is added.
        tokenizer_files: Basename -> absolute path for each tokenizer file in
            `TOKENIZER_FILES` that exists in the directory.
        weights_format: "safetensors" or "pytorch" (a pickled `.bin`).
    """

    directory: str
    config: dict
    weights: Mapping[str, np.ndarray]
    tokenizer_files: dict[str, str]
    weights_format: str


def read_hf_checkpoint(path, allow_pickle=False) -> HFCheckpoint:
    """Reads a local Hugging Face checkpoint directory.

    Weight files are looked for in this order: `model.safetensors`, the
    sharded `model.safetensors.index.json`, then (only with `allow_pickle`)
    `pytorch_model.bin` and the sharded `pytorch_model.bin.index.json`.

    Args:
        path: The checkpoint directory (str or path-like).
        allow_pickle: Whether PyTorch `.bin` files may be read. They are
            pickles, and unpickling a file can run code from it; even with
            this flag they are loaded with `torch.load(weights_only=True)`.

    Returns:
        An `HFCheckpoint`.

    Raises:
        FileNotFoundError: `path` does not exist, or a shard named by an index
            file is missing.
        ValueError: `path` is not a directory; `config.json` is missing or is
            not a JSON object; no usable weight file is present; only `.bin`
            weights exist and `allow_pickle` is False; a weight file is
            malformed.
        ImportError: `.bin` files are read and `torch` is not installed.
    """
    directory = os.path.abspath(os.fspath(path))
    if not os.path.exists(directory):
        raise FileNotFoundError(
            f"Hugging Face checkpoint directory {directory!r} does not exist. Pass the path of a local "
            "directory holding config.json and the weights (e.g. one written by `save_pretrained`); "
            "nothing is downloaded."
        )
    if not os.path.isdir(directory):
        raise ValueError(
            f"Hugging Face checkpoint path {directory!r} is a file, not a directory. Pass the directory "
            "that holds config.json and the weight files."
        )
    config = _read_config(directory)
    weights, weights_format = _read_weights(directory, allow_pickle)
    tokenizer_files = {
        name: os.path.join(directory, name) for name in TOKENIZER_FILES if os.path.isfile(os.path.join(directory, name))
    }
    return HFCheckpoint(
        directory=directory,
        config=config,
        weights=weights,
        tokenizer_files=tokenizer_files,
        weights_format=weights_format,
    )


def _read_config(directory):
    return read_config_json(
        directory, "Hugging Face checkpoint", "the config.json written by `save_pretrained` next to its weights"
    )


def read_config_json(directory, kind, needs):
    """Parses `directory/config.json` into a dict, with errors that say what to fix.

    Args:
        directory: the checkpoint or preset folder.
        kind: what the folder is, for messages ("Hugging Face checkpoint").
        needs: what a valid folder holds, for the missing-file message.
    """
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(
            f"No config.json in {kind} directory {directory!r} (files there: {directory_listing(directory)}). "
            f"A {kind.split()[-1]} needs {needs}."
        )
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_path!r} is not valid JSON ({e}). Fix or re-create the file.") from e
    if not isinstance(config, dict):
        raise ValueError(
            f"{config_path!r} must hold a JSON object, found a {type(config).__name__}. Fix or re-create the file."
        )
    return config


def _read_weights(directory, allow_pickle):
    """Returns `(weights, weights_format)` from the preferred weight file."""
    present = {name for name in WEIGHT_FILES if os.path.isfile(os.path.join(directory, name))}
    if SAFETENSORS_FILE in present:
        return _read_safetensors(os.path.join(directory, SAFETENSORS_FILE)), "safetensors"
    if SAFETENSORS_INDEX_FILE in present:
        entries = _read_sharded(directory, SAFETENSORS_INDEX_FILE, _safetensors_entries)
        return SafetensorsWeights(entries), "safetensors"
    pickled = [name for name in (PYTORCH_FILE, PYTORCH_INDEX_FILE) if name in present]
    if pickled and not allow_pickle:
        raise ValueError(
            f"Hugging Face checkpoint {directory!r} has only PyTorch pickle weights ({', '.join(pickled)}). "
            "Pickle files can run arbitrary code when they are loaded, so they are refused by default; "
            "safetensors files are preferred. Either convert the checkpoint to model.safetensors "
            "(e.g. load it with transformers and call `save_pretrained`), or, if you trust the file, "
            "opt in with `read_hf_checkpoint(path, allow_pickle=True)` (it is then loaded with "
            "`torch.load(..., weights_only=True)`)."
        )
    if PYTORCH_FILE in present:
        return _read_torch(os.path.join(directory, PYTORCH_FILE)), "pytorch"
    if PYTORCH_INDEX_FILE in present:
        return _read_sharded(directory, PYTORCH_INDEX_FILE, _read_torch), "pytorch"
    raise ValueError(
        f"No weights found in Hugging Face checkpoint directory {directory!r}. Accepted weight files: "
        f"{', '.join(WEIGHT_FILES)} (.bin only with allow_pickle=True). Files there: {directory_listing(directory)}. "
        "Other formats (tf_model.h5, flax_model.msgpack, ...) are not supported: re-save the model with "
        "`save_pretrained` from PyTorch transformers to get model.safetensors."
    )


def directory_listing(directory, limit=30):
    """The first `limit` file names of `directory`, for error messages."""
    names = sorted(os.listdir(directory))
    if not names:
        return "none (the directory is empty)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _read_sharded(directory, index_name, read_shard):
    """Reads every shard listed in the `weight_map` of a sharded checkpoint's index.

    `read_shard(path)` returns a shard's `name -> value` (arrays for `.bin` pickles,
    `_TensorEntry` locations for safetensors); the shards' mappings are merged.
    """
    index_path = os.path.join(directory, index_name)
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"Shard index {index_path!r} is not valid JSON ({e}). Fix or re-create the file.") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"Shard index {index_path!r} has no 'weight_map' object mapping weight names to shard files.")
    weights = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(
                f"Shard {shard!r} listed in {index_path!r} is missing from {directory!r}. "
                "Copy every shard file of the checkpoint into the directory."
            )
        for name, value in read_shard(shard_path).items():
            if name in weights:
                raise ValueError(f"Weight {name!r} appears in more than one shard of {index_path!r}.")
            weights[name] = value
    missing = sorted(set(weight_map) - set(weights))
    if missing:
        raise ValueError(
            f"{len(missing)} weights listed in {index_path!r} are not in their shards: {', '.join(missing[:20])}"
            + (" ..." if len(missing) > 20 else "")
        )
    return weights


def _to_float32(array):
    """Floating arrays become float32; integer and boolean arrays are unchanged."""
    array = np.asarray(array)
    if array.dtype.kind in "biu":
        return array
    return array.astype(np.float32, copy=False)


# safetensors dtype codes (format spec: little-endian, C order) -> NumPy dtypes.
_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}
_FLOAT8_DTYPES = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
# Bytes per element of the dtypes NumPy lacks.
_RAW_ITEMSIZE = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
# A safetensors header is JSON of at most this size (the format's own limit is 100 MB).
_MAX_HEADER_BYTES = 100_000_000


@dataclasses.dataclass(frozen=True)
class _TensorEntry:
    """Where one tensor lies in a safetensors file: `nbytes` bytes at absolute `offset`."""

    path: str
    dtype: str  # safetensors code, e.g. "BF16"
    shape: tuple
    offset: int
    nbytes: int


def _safetensors_entries(path):
    """Parses a safetensors header into `name -> _TensorEntry`, reading no tensor data.

    Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON header
    (`name -> {"dtype", "shape", "data_offsets": [begin, end]}`, offsets relative
    to the end of the header, plus an optional `__metadata__`), then the raw tensor
    bytes. Every entry is checked here (known dtype, offsets inside the file, byte
    count equal to the shape's), so a malformed file fails before any weight is used.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path!r} is not a safetensors file (only {size} bytes).")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > _MAX_HEADER_BYTES or 8 + header_size > size:
            raise ValueError(f"{path!r} is not a safetensors file (header size {header_size} past end of file).")
        raw_header = f.read(header_size)
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} has a malformed safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path!r} has a malformed safetensors header: not a JSON object.")
    data_start, data_size = 8 + header_size, size - 8 - header_size
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Tensor {name!r} in {path!r} has a malformed header entry {info!r}.") from e
        if dtype in _SAFETENSORS_DTYPES:
            itemsize = np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
        elif dtype in _RAW_ITEMSIZE:
            itemsize = _RAW_ITEMSIZE[dtype]
        else:
            raise ValueError(f"Tensor {name!r} in {path!r} has unsupported safetensors dtype {dtype!r}.")
        if not 0 <= begin <= end <= data_size:
            raise ValueError(
                f"Tensor {name!r} in {path!r}: data offsets [{begin}, {end}] lie outside the {data_size} data bytes "
                "(the file is truncated or corrupt)."
            )
        if end - begin != math.prod(shape) * itemsize:
            raise ValueError(
                f"Tensor {name!r} in {path!r}: {end - begin} bytes of {dtype} do not fill shape {list(shape)}."
            )
        entries[name] = _TensorEntry(path, dtype, shape, data_start + begin, end - begin)
    return entries


def _read_entry(entry, file=None):
    """Decodes one tensor from disk into a new NumPy array of its stored dtype (bfloat16 and
    float8, which NumPy lacks, become float32).

    Plain reads, not a memory map: the bytes land in the array itself and no page of the
    file stays mapped into the process (a map keeps every page it touched resident until it
    is closed, so reading a whole checkpoint through one would hold a second copy).
    bfloat16 is the upper half of a float32, so it is widened by shifting the 16 bits left.
    """
    if entry.dtype in _SAFETENSORS_DTYPES:
        stored = np.dtype(_SAFETENSORS_DTYPES[entry.dtype])
    else:
        stored = np.dtype("<u2" if entry.dtype == "BF16" else "u1")
    value = np.empty(entry.nbytes // stored.itemsize, dtype=stored)
    if file is None:
        with open(entry.path, "rb") as f:
            _read_into(f, entry, value)
    else:
        _read_into(file, entry, value)
    if entry.dtype == "BF16":
        widened = value.astype(np.uint32)
        del value
        widened <<= 16
        value = widened.view(np.float32)
    elif entry.dtype in _FLOAT8_DTYPES:
        import ml_dtypes

        value = value.view(getattr(ml_dtypes, _FLOAT8_DTYPES[entry.dtype])).astype(np.float32)
    elif not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return value.reshape(entry.shape)


def _read_into(file, entry, array):
    file.seek(entry.offset)
    view = memoryview(array).cast("B")
    filled = 0
    while filled < entry.nbytes:
        count = file.readinto(view[filled:])
        if not count:
            raise ValueError(f"{entry.path!r} ended inside the data of a tensor (the file is truncated).")
        filled += count


class SafetensorsWeights(Mapping):
    """The tensors of one or more safetensors files, decoded one at a time on access.

    A read-only mapping `name -> np.ndarray`. Only the headers are read up front; each
    `weights[name]` reads that tensor from disk and returns a new array (floating
    tensors as float32, integer and boolean ones in their own dtype) that nothing here
    keeps, so importing a model holds at most one checkpoint tensor beside the model's
    variables instead of a second copy of the whole model. Reading the same name twice
    reads the file twice.

    `shape(name)` and `stored_dtype(name)` answer from the header without reading data.
    """

    def __init__(self, entries):
        """Args:
        entries: `name -> _TensorEntry`, from `_safetensors_entries` of each file.
        """
        self._entries = dict(entries)

    def __getitem__(self, name):
        return _to_float32(_read_entry(self._entries[name]))

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def shape(self, name):
        """The shape of tensor `name` (a tuple), from the header."""
        return self._entries[name].shape

    def stored_dtype(self, name):
        """The safetensors dtype code of tensor `name` as stored ("F32", "BF16", ...)."""
        return self._entries[name].dtype

    def files(self):
        """The sorted paths of the files holding the tensors."""
        return sorted({entry.path for entry in self._entries.values()})

    def __repr__(self):
        return f"SafetensorsWeights({len(self)} tensors in {len(self.files())} file(s))"


def _read_safetensors(path):
    """The tensors of one safetensors file as a lazy `SafetensorsWeights`."""
    return SafetensorsWeights(_safetensors_entries(path))


def _read_safetensors_raw(path):
    """Decodes every tensor of a safetensors file at once, each in its stored dtype
    (bfloat16 and float8 widened to float32): `name -> np.ndarray`."""
    entries = _safetensors_entries(path)
    with open(path, "rb") as f:
        return {name: _read_entry(entry, f) for name, entry in entries.items()}


def _read_torch(path):
    """Loads a pickled PyTorch state dict with `weights_only=True`, floats as float32."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"Reading the PyTorch checkpoint {path!r} needs torch. Install the CPU build "
            "(pip install torch --index-url https://download.pytorch.org/whl/cpu), or convert the "
            "checkpoint to model.safetensors, which needs no torch."
        ) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"Could not load PyTorch checkpoint {path!r} with weights_only=True: {e}") from e
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, expected a state dict (name -> tensor).")
    weights = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue  # Not a weight (rare bookkeeping entries).
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)  # bfloat16 has no NumPy equivalent.
        weights[name] = tensor.numpy().copy()
    return weights


class WeightReader:
    """Hands out checkpoint tensors by name and tracks which were used.

    A converter `take`s every tensor it maps and `ignore`s the ones it knowingly
    drops (e.g. `position_ids` buffers); `finish` then fails if anything was
    neither, so a checkpoint weight can never be skipped silently.

    Example:
        reader = WeightReader(checkpoint.weights)
        assign(layer.kernel, linear_to_kernel(reader.take("dense.weight")), "dense.weight")
        reader.ignore(lambda name: name.endswith(".attn.masked_bias"))
        reader.finish()
    """

    def __init__(self, weights):
        """Args:
        weights: `name -> np.ndarray` mapping of checkpoint tensors (a dict, or
            a lazy `SafetensorsWeights`, which is used as is so that each tensor
            is read only when taken), or an `HFCheckpoint` (its `weights`).
        """
        if isinstance(weights, HFCheckpoint):
            weights = weights.weights
        self._weights = weights if isinstance(weights, SafetensorsWeights) else dict(weights)
        self._used = set()
        self._ignored = set()

    def names(self):
        """All tensor names, sorted."""
        return sorted(self._weights)

    def has(self, name):
        """Whether the checkpoint has a tensor called `name` (does not mark it used)."""
        return name in self._weights

    def peek(self, name):
        """Returns tensor `name` (or None) without marking it used: for decisions
        about the model's shape that precede loading."""
        return self._weights.get(name)

    def take(self, name):
        """Returns tensor `name` and marks it used. A tensor may be taken more than once
        (from a lazy checkpoint each take reads it again; the caller owns the array).

        Raises:
            ValueError: No such tensor; the message lists similar names.
        """
        if name not in self._weights:
            raise ValueError(self._missing_message(name))
        self._used.add(name)
        return self._weights[name]

    def take_optional(self, name):
        """Like `take`, but returns None when the tensor is absent."""
        if name not in self._weights:
            return None
        return self.take(name)

    def ignore(self, names_or_predicate):
        """Marks tensors as deliberately unused, so that `finish` accepts them.

        Args:
            names_or_predicate: A name, an iterable of names, or a callable
                `name -> bool` applied to every tensor name. Names that are not
                in the checkpoint are accepted and have no effect (buffers such
                as `position_ids` are present only in some checkpoints).

        Returns:
            The sorted names that are now ignored by this call.
        """
        if callable(names_or_predicate):
            matched = [name for name in self._weights if names_or_predicate(name)]
        elif isinstance(names_or_predicate, str):
            matched = [names_or_predicate] if names_or_predicate in self._weights else []
        elif isinstance(names_or_predicate, Iterable):
            matched = [name for name in names_or_predicate if name in self._weights]
        else:
            raise TypeError(f"ignore() takes a name, names or a predicate, got {type(names_or_predicate).__name__}")
        self._ignored.update(matched)
        return sorted(matched)

    def unused(self):
        """Sorted names that were neither taken nor ignored so far."""
        return sorted(set(self._weights) - self._used - self._ignored)

    def finish(self):
        """Checks that every tensor was taken or ignored.

        Raises:
            ValueError: Listing every unused tensor with its shape.
        """
        unused = self.unused()
        if unused:
            lines = "\n".join(f"  {name} {list(self._shape(name))}" for name in unused)
            raise ValueError(
                f"unused weights in checkpoint: {len(unused)} of {len(self._weights)} tensors were neither "
                f"converted nor explicitly ignored (the converter does not match this checkpoint):\n{lines}"
            )

    def _shape(self, name):
        """The shape of tensor `name`, without reading a lazy tensor's data."""
        if isinstance(self._weights, SafetensorsWeights):
            return self._weights.shape(name)
        return np.shape(self._weights[name])

    def _missing_message(self, name):
        close = difflib.get_close_matches(name, self._weights, n=_MAX_SUGGESTIONS, cutoff=0.5)
        message = f"weight {name!r} not found in checkpoint ({len(self._weights)} tensors)."
        if close:
            return message + " Similar names: " + ", ".join(close)
        examples = ", ".join(sorted(self._weights)[:_MAX_SUGGESTIONS])
        return message + f" No similar names; the checkpoint has e.g.: {examples}"


# While `recording_assignments` is active: id(variable) -> (variable, checkpoint name) of each `assign`.
_ASSIGNED = contextvars.ContextVar("kzoo_convert_assigned", default=None)


@contextlib.contextmanager
def recording_assignments():
    """Records every `assign` made inside the block; yields the record for `check_all_assigned`."""
    record = {}
    token = _ASSIGNED.set(record)
    try:
        yield record
    finally:
        _ASSIGNED.reset(token)


def check_all_assigned(model, record, source="the checkpoint"):
    """Raises ValueError listing the weights of `model` that no `assign` in `record` filled.

    A converter that builds a part the checkpoint does not have (and so never assigns it) would
    otherwise hand back that part at its random initial value.
    """
    unfilled = [weight for weight in model.weights if id(weight) not in record]
    if unfilled:
        lines = "\n".join(f"  {weight.path} {list(weight.shape)}" for weight in unfilled)
        raise ValueError(
            f"{source}: {len(unfilled)} of {len(model.weights)} weights of the imported "
            f"{type(model).__name__} received no value from the checkpoint (the converter built a part the "
            f"file does not have; it would be random):\n{lines}"
        )


def assign(variable, value, name=None):
    """Assigns a checkpoint tensor to a Keras variable after checking its shape.

    Inside `kzoo.models.backbone.weights_to_be_overwritten`, where importers build
    their models, the first assignment creates the variable from `value` (see
    `kzoo.models.backbone.assign_weight`): no buffer of initial values is filled
    only to be overwritten. Under TensorFlow `value` is copied; under JAX the
    variable may share the memory of a contiguous NumPy `value` (JAX's CPU
    transfer takes an aligned array without a copy), so do not modify it after.

    Args:
        variable: A `keras.Variable` (e.g. `layer.kernel`).
        value: Array-like whose shape must equal `variable.shape` exactly (no
            broadcasting); it is cast to the variable's dtype. A view such as
            `linear_to_kernel`'s transpose is laid out by the copy.
        name: The checkpoint tensor name, used in the error message.

    Raises:
        ValueError: The shapes differ; the message names the checkpoint tensor,
            the variable path and both shapes.
    """
    value = np.asarray(value)
    want = tuple(int(d) for d in variable.shape)
    if tuple(value.shape) != want:
        path = getattr(variable, "path", None) or getattr(variable, "name", repr(variable))
        raise ValueError(
            f"Shape mismatch: checkpoint weight {name!r} has shape {tuple(value.shape)} but variable "
            f"{path!r} has shape {want}."
        )
    from kzoo.models.backbone import assign_weight

    assign_weight(variable, value)
    record = _ASSIGNED.get()
    if record is not None:
        record[id(variable)] = (variable, name)


def linear_to_kernel(weight):
    """torch `nn.Linear` weight `(out, in)` -> Keras kernel `(in, out)`.

    PyTorch computes `x @ W.T`, Keras `x @ K`, so `K = W.T`. Do not use this for
    GPT-2's `Conv1D` weights, which are already stored `(in, out)`.

    Returns a transposed view of `weight`, not a copy: `assign` lays it out in the
    copy it makes for the variable anyway (a copy here as well took a third of a
    TinyLlama-sized import's time). `np.ascontiguousarray` it where a layout matters.
    """
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear_to_kernel expects a 2-D (out, in) weight, got shape {weight.shape}.")
    return weight.T


def split_heads_in(kernel, num_heads):
    """Splits the last axis into heads: `(..., h * k)` -> `(..., h, k)`.

    For query/key/value projections: kernel `(in, h * k)` -> `(in, h, k)`, and
    bias `(h * k,)` -> `(h, k)`. Head `i` owns columns `i * k ... (i + 1) * k - 1`,
    which is how Hugging Face models lay out heads.
    """
    kernel = np.asarray(kernel)
    width = kernel.shape[-1]
    if num_heads <= 0 or width % num_heads:
        raise ValueError(f"split_heads_in: last axis {width} (shape {kernel.shape}) is not divisible by {num_heads}.")
    return kernel.reshape(*kernel.shape[:-1], num_heads, width // num_heads)


def merge_heads_out(kernel, num_heads):
    """Splits the first axis into heads: `(h * k, out)` -> `(h, k, out)`.

    For attention output projections, whose input is the concatenation of the
    heads (head `i` owns rows `i * k ... (i + 1) * k - 1`).
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"merge_heads_out expects a 2-D (h * k, out) kernel, got shape {kernel.shape}.")
    width = kernel.shape[0]
    if num_heads <= 0 or width % num_heads:
        raise ValueError(f"merge_heads_out: first axis {width} (shape {kernel.shape}) is not divisible by {num_heads}.")
    return kernel.reshape(num_heads, width // num_heads, kernel.shape[1])
