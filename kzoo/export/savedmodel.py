"""`export_savedmodel`: a kzoo model (and its tokenizer) as a SavedModel that TF Serving loads.

Layout (TF Serving's): `<export_dir>/<model_name>/<version>/` with `saved_model.pb`, `variables/`, `assets/` (the
tokenizer's vocabulary files) and `assets.extra/`:
  * `tf_serving_warmup_requests`: one PredictRequest per signature (TF Serving replays them at load, so the first
    client request does not pay for graph initialisation);
  * `kzoo_export.json`: the model class, signatures with their inputs, outputs and the truncation policy, labels,
    settings, and the versions that wrote it. `input_positions` lists each signature's inputs in the order of
    TensorFlow's "input #k(zero-based) was expected to be a int32 tensor" dtype errors (sorted names).

The version directory is written under a hidden staging name and renamed when complete, so a server polling
`<model_name>/` never loads a half-written version.

The SavedModel is self-contained: its graphs use core TensorFlow and tensorflow-text kernels only (no Python, no
Keras, no kzoo; see `reload_check.py`), the tokenizer runs in the graph, and the decoding loop of `generate` uses
no XLA-only ops (`kzoo.layers.cache_updates`). It also loads as a TF Hub module: `hub.KerasLayer(path)` and
`keras.layers.TFSMLayer(path)` call its tensor-in function (`__call__` / `serving_default`), and its `variables`
and `trainable_variables` are exposed.
"""

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

import kzoo
from kzoo.export import generation, serving
from kzoo.export.errors import ExportError, ExportWarning
from kzoo.layers.cache_updates import portable_updates
from kzoo.models.backbone import backbone_of, position_limit
from kzoo.models.bert.backbone import BertBackbone
from kzoo.models.bert.tasks import BertClassifier, BertSpanQA, BertTokenClassifier
from kzoo.models.gpt.tasks import GPTCausalLM
from kzoo.models.lora import lora_settings, merged_copy
from kzoo.models.seq2seq.tasks import Seq2SeqLM

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "kzoo_export.json"
SERVABLE_MODELS = (
    "BertBackbone, BertClassifier, BertTokenClassifier, BertSpanQA, BertPretrainer, GPTCausalLM, Seq2SeqLM"
)


@dataclasses.dataclass
class ExportResult:
    """Where the export went and what it serves."""

    path: str  # the version directory
    model_name: str
    version: int
    signatures: dict  # name -> doc


def _check_model(model):
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"SavedModel export needs the TensorFlow Keras backend (running {keras.backend.backend()!r}); "
            "set KERAS_BACKEND=tensorflow."
        )
    from kzoo.models.backbone import Backbone, Task

    if not isinstance(model, (Task, BertBackbone)) or (isinstance(model, Backbone) and not isinstance(
            model, BertBackbone)):
        raise ExportError(f"export takes a kzoo model ({SERVABLE_MODELS}), got {type(model).__name__}.")


def _check_tokenizer(model, tokenizer):
    if tokenizer is None:
        return
    vocabulary = backbone_of(model).vocabulary_size
    if tokenizer.vocabulary_size > vocabulary:
        raise ExportError(
            f"The tokenizer has {tokenizer.vocabulary_size} ids but the model's vocabulary has "
            f"{vocabulary}: export with the tokenizer the model was trained with."
        )


def resolve_settings(model, tokenizer, settings):
    settings = settings or serving.ServingSettings()
    limit = position_limit(model)
    changes = {}
    if limit is not None and settings.sequence_length > limit and not isinstance(model, GPTCausalLM):
        changes["sequence_length"] = limit
        warnings.warn(f"sequence_length={settings.sequence_length} is above the model's {limit} positions; texts "
                      f"are packed in {limit} sub-tokens.", ExportWarning, stacklevel=3)
    if tokenizer is not None:
        special = getattr(tokenizer, "special_token_ids", {}) or {}
        if not settings.stop_token_ids and "eos" in special:
            changes["stop_token_ids"] = (special["eos"],)
        changes["pad_id"] = int(getattr(tokenizer, "pad_id", settings.pad_id))
    if settings.max_new_tokens is None:
        # 64 new tokens, or half the positions of a learned-position GPT with a smaller context.
        room = 64 if limit is None or not isinstance(model, (GPTCausalLM, Seq2SeqLM)) else min(64, limit // 2)
        changes["max_new_tokens"] = max(room, 1)
    for name in ("sequence_length", "max_new_tokens", "max_query_length", "max_answer_tokens"):
        value = changes.get(name, getattr(settings, name))
        if not isinstance(value, int) or value < 1:
            raise ExportError(f"{name} must be a positive integer, got {value!r}.")
    if changes.get("sequence_length", settings.sequence_length) < 4:
        raise ExportError("sequence_length must be at least 4 sub-tokens.")
    _check_generation_settings(model, dataclasses.replace(settings, **changes))
    return dataclasses.replace(settings, **changes)


def _check_generation_settings(model, settings):
    """The `generate` defaults a request cannot change: refused at export, not on every request (an id outside
    the vocabulary would even be looked up silently as zeros on a GPU)."""
    if not isinstance(model, (GPTCausalLM, Seq2SeqLM)):
        return
    if not (isinstance(settings.temperature, (int, float)) and np.isfinite(settings.temperature)
            and settings.temperature >= 0):
        raise ExportError(f"temperature must be a number >= 0 (0 = greedy), got {settings.temperature!r}.")
    if not (isinstance(settings.top_p, (int, float)) and 0 < settings.top_p <= 1):
        raise ExportError(f"top_p must be in (0, 1], got {settings.top_p!r}.")
    vocabulary = backbone_of(model).vocabulary_size
    ids = {"pad_id": [settings.pad_id], "stop_token_ids": list(settings.stop_token_ids)}
    if settings.decoder_start_id is not None:
        ids["decoder_start_id"] = [settings.decoder_start_id]
    for name, values in ids.items():
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < vocabulary
                   for v in values):
            raise ExportError(f"{name} must hold ids in [0, {vocabulary - 1}] (the model's vocabulary), got "
                              f"{values if name == 'stop_token_ids' else values[0]!r}.")


def serving_signatures(model, tokenizer=None, labels=None, settings=None):
    """The `Signature`s exported for `model` (tensor-in always; text-in with a tokenizer)."""
    signatures = [serving.tensor_signature(model, _tensor_example(model, tokenizer))]
    if tokenizer is None:
        return signatures
    if isinstance(model, BertClassifier):
        signatures += serving.classification_signatures(model, tokenizer, labels, settings)
    elif isinstance(model, BertTokenClassifier):
        signatures += serving.tagging_signature(model, tokenizer, labels, settings)
    elif isinstance(model, BertSpanQA):
        signatures += serving.qa_signature(model, tokenizer, settings)
    elif isinstance(model, BertBackbone):
        signatures += serving.embedding_signature(model, tokenizer, settings)
    elif isinstance(model, (GPTCausalLM, Seq2SeqLM)):
        signatures += generation.generation_signatures(model, tokenizer, settings)
    return signatures


def _tensor_example(model, tokenizer):
    """A small valid tensor-in request: batch 2, length 6."""
    names = serving.input_names(model)
    vocabulary = backbone_of(model).vocabulary_size
    ids = (np.arange(12, dtype=np.int32).reshape(2, 6) * 7 + 3) % vocabulary
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], np.int32)
    example = {}
    for name in names:
        if name.endswith("token_ids"):
            example[name] = ids
        elif name.endswith("padding_mask"):
            example[name] = mask
        elif name == "segment_ids":
            example[name] = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]], np.int32)
            if backbone_of(model).num_segments == 1:  # RoBERTa: one segment type
                example[name] = np.zeros_like(example[name])
        elif name == "mask_positions":
            example[name] = np.array([[1, 2], [3, 0]], np.int32)
    return example


class _Servable(tf.__internal__.tracking.AutoTrackable):
    """The saved object: the model's variables, the tokenizer, the assets and the functions."""


def _next_version(model_dir):
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def _version_dir(export_dir, model_name, version, overwrite):
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ExportError(f"model_name must be a plain directory name, got {model_name!r}.")
    model_dir = os.path.join(os.fspath(export_dir), model_name)
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export directory {model_dir!r}: {error.strerror}.") from error
    if not os.access(model_dir, os.W_OK):
        raise ExportError(f"The export directory {model_dir!r} is not writable.")
    if version is None:
        version = _next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer (TF Serving's version directories), got {version!r}.")
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise ExportError(
            f"{target} already exists; pass another version, omit it to use the next free one "
            f"({_next_version(model_dir)}), or overwrite=True (--overwrite)."
        )
    return model_dir, target, version


def example_arrays(signature):
    """The example request of `signature` as NumPy arrays in the signature's dtypes."""
    specs = signature.function.input_signature
    flat = {}
    for spec in specs:
        if isinstance(spec, dict):
            flat.update({name: item for name, item in spec.items()})
        else:
            flat[spec.name] = spec
    arrays = {}
    for name, value in signature.example.items():
        dtype = flat[name].dtype
        arrays[name] = np.array(value, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        if dtype == tf.string:
            arrays[name] = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in np.ravel(arrays[name])],
                                    dtype=object).reshape(np.shape(value))
    return arrays


def write_warmup_requests(path, model_name, signatures):
    """`assets.extra/tf_serving_warmup_requests`: a TFRecord of PredictionLog protos, one per signature."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature in signatures:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature.name)
            )
            for name, array in example_arrays(signature).items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(path):
    """The `(signature_name, {input: NumPy array})` pairs of a warm-up file (tests, `--verify`)."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name, inputs))
    return requests


def _tensor_description(info, rank=None):
    """`{dtype, shape}` of a SignatureDef TensorInfo; -1 marks a dynamic size, `rank` stands in for an unknown
    rank (the inputs are declared rank-free and checked in the graph)."""
    shape = info.tensor_shape
    if shape.unknown_rank:
        dims = None if rank is None else [-1] * rank
    else:
        dims = [int(dim.size) for dim in shape.dim]
    return {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": dims}


def _io_descriptions(saved_dir, signatures):
    """{signature: ({input: {dtype, shape}}, {output: {dtype, shape}})} read from the written `saved_model.pb`
    (what a server sees; tracing the functions again here would double the export time). Input ranks come from
    each signature's example request."""
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(saved_dir, "saved_model.pb"), "rb") as handle:
        saved = saved_model_pb2.SavedModel.FromString(handle.read())
    definitions = saved.meta_graphs[0].signature_def
    described = {}
    for signature in signatures:
        definition = definitions[signature.name]
        ranks = {name: np.ndim(value) for name, value in signature.example.items()}
        inputs = {name: _tensor_description(info, ranks.get(name)) for name, info in sorted(definition.inputs.items())}
        outputs = {name: _tensor_description(info) for name, info in sorted(definition.outputs.items())}
        described[signature.name] = (inputs, outputs)
    return described


def export_savedmodel(
    model,
    export_dir,
    *,
    tokenizer=None,
    labels=None,
    model_name=None,
    version=None,
    settings=None,
    tokenizer_files=None,
    warmup=True,
    overwrite=False,
):
    """Writes `model` as a TF Serving SavedModel `<export_dir>/<model_name>/<version>/`.

    Args:
        model: a kzoo `BertBackbone`, `BertClassifier`, `BertTokenClassifier`, `BertSpanQA`, `BertPretrainer`,
            `GPTCausalLM` or `Seq2SeqLM` (TensorFlow backend).
        export_dir: the model base path TF Serving is pointed at (its parent, with `model_name`).
        tokenizer: a `kzoo.text` tokenizer; adds the text-in signatures (see `kzoo.export.serving`).
        labels: class or tag names in id order (classification/tagging); default "0", "1", ...
        model_name: TF Serving's model name (default: the model's class name in lower case).
        version: int >= 1; default the next free version number.
        settings: `ServingSettings` (packing length, generation limits).
        tokenizer_files: `{basename: path}` copied into `assets/` (the vocabulary travels with the model).
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        overwrite: replace an existing version directory.

    Returns:
        `ExportResult`.

    Raises:
        ExportError: wrong backend or model type, labels that do not match the classes, a tokenizer larger than
            the model's vocabulary, a version directory that exists, an unwritable directory.
    """
    _check_model(model)
    _check_tokenizer(model, tokenizer)
    adapters = lora_settings(model)
    model = merged_copy(model)  # one matmul per projection in the served graph
    if isinstance(model, (BertClassifier, BertTokenClassifier)):
        labels = serving.class_labels(model, labels)
    settings = resolve_settings(model, tokenizer, settings)
    model_name = model_name or type(model).__name__.lower()
    model_dir, target, version = _version_dir(export_dir, model_name, version, overwrite)

    signatures = serving_signatures(model, tokenizer, labels, settings)
    root = _Servable()
    # The Keras model object is not tracked: its variables are (above), and walking its object graph would
    # double the save time for nothing a loaded SavedModel uses.
    root.variables = [variable.value for variable in model.variables]
    root.trainable_variables = [variable.value for variable in model.trainable_variables]
    root.regularization_losses = []
    if tokenizer is not None:
        root.tokenizer = tokenizer
    root.vocabulary_files = [tf.saved_model.Asset(path) for _, path in sorted((tokenizer_files or {}).items())]
    for signature in signatures:
        setattr(root, signature.name, signature.function)
    root.__call__ = signatures[0].function  # the TF Hub / TFSMLayer entry point

    staging = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir)
    try:
        with portable_updates():
            # tf.functions (not concrete functions traced beforehand): the saver traces each one once, in its save
            # context; a function traced outside that context would be traced a second time.
            tf.saved_model.save(root, staging, signatures={s.name: s.function for s in signatures})
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        if warmup:
            write_warmup_requests(os.path.join(extra, WARMUP_FILE), model_name, signatures)
        metadata = _metadata(model, signatures, _io_descriptions(staging, signatures), labels, settings, tokenizer,
                             tokenizer_files, model_name, version)
        metadata["weights"] = _weights_description(model, adapters)
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=1)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(target, model_name, version, {s.name: s.doc for s in signatures})


def _weights_description(model, adapters):
    """`kzoo_export.json`'s `weights`: how the kernels are stored (Keras quantization modes) and adapters."""
    modes = sorted({layer.quantization_mode for layer in model._flatten_layers() if layer.quantization_mode})
    unmerged = any(getattr(layer, "lora_enabled", False) for layer in model._flatten_layers())
    return {"quantization": modes or None,
            "lora": None if adapters is None else {**adapters, "merged": not unmerged}}


def _metadata(model, signatures, io_descriptions, labels, settings, tokenizer, tokenizer_files, model_name,
              version):
    described = {}
    for signature in signatures:
        inputs, outputs = io_descriptions[signature.name]
        # TensorFlow and TF Serving name an input of the wrong dtype by position ("input #2(zero-based) was
        # expected to be a int32 tensor"): the positions follow the sorted input names, listed here.
        described[signature.name] = {"doc": signature.doc, "inputs": inputs, "outputs": outputs,
                                     "input_positions": sorted(inputs)}
    return {
        "format": "kzoo-savedmodel/1",
        "model_name": model_name,
        "version": version,
        "model_class": type(model).__name__,
        "model_config": json.loads(json.dumps(model.get_config(), default=str)),
        "signatures": described,
        "labels": labels,
        "settings": dataclasses.asdict(settings),
        "tokenizer": None if tokenizer is None else {
            "class": type(tokenizer).__name__,
            "vocabulary_size": tokenizer.vocabulary_size,
            "assets": sorted(os.path.basename(p) for p in (tokenizer_files or {}).values()),
        },
        "written_by": {
            "kzoo": kzoo.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "serving": f"tensorflow_model_server --model_name={model_name} --model_base_path=<absolute path of "
                   f"the export dir/{model_name}> --enable_model_warmup=true",
    }
