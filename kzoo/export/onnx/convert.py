"""`export_onnx`: the graphs of `graphs` traced as `tf.function`s, converted with tf2onnx, and `export.json`.

Each graph is converted with `tf2onnx.convert.from_function` (plus a handler for `Erfc`, which tf2onnx lacks),
checked for ops no ONNX schema defines, given named dynamic axes and saved; `export.json` records the opset, the
versions, the model class, its config and every graph's inputs and outputs, and `load_metadata` reads it back for
`quantize` and `verify`. The directory layout is described in `kzoo.export.onnx`.
"""

import contextlib
import json
import logging
import os
import tempfile
import time

import numpy as np

from kzoo.export.errors import ExportError
from kzoo.export.onnx.graphs import decoder_sizes, export_graphs
from kzoo.run_directory import LABELS_FILE  # the class names, in the format a run keeps in tokenizer/

METADATA_FILE = "export.json"

# Opset 17: the newest one tf2onnx 1.17 targets throughout (its table stops at 18, where only
# a couple of handlers have versions); onnxruntime 1.32 runs 17 and 18 alike. Tested: 13-18.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18


class OnnxExportError(ExportError):
    """The conversion to ONNX failed (an op tf2onnx cannot convert, a tf2onnx error)."""


def _erfc_handler(ctx, node, name, args):
    """tf2onnx has no handler for `Erfc` (TensorFlow's exact GELU uses it): erfc(x) = 1 - erf(x)."""
    from onnx import helper
    from tf2onnx import utils

    dtype = ctx.get_dtype(node.input[0])
    node.type = "Erf"
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, helper.tensor_dtype_to_np_dtype(dtype)))
    subtract = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_sub"))
    ctx.replace_inputs(subtract, [one.output[0], node.output[0]])
    ctx.set_dtype(subtract.output[0], dtype)
    ctx.set_shape(subtract.output[0], ctx.get_shape(node.output[0]))


CUSTOM_OP_HANDLERS = {"Erfc": (_erfc_handler, [])}


def require_tensorflow():
    """OnnxExportError unless Keras runs the TensorFlow backend (tf2onnx converts TensorFlow graphs)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise OnnxExportError(
            f"export_onnx converts TensorFlow graphs (tf2onnx), but Keras runs the {keras.backend.backend()!r} "
            "backend; run with KERAS_BACKEND=tensorflow (a .keras file exported from JAX training loads there)."
        )


def _check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"export_onnx: opset must be an int in [{MIN_OPSET}, {MAX_OPSET}] (what tf2onnx 1.17 converts to), "
            f"got {opset!r}; the default is {DEFAULT_OPSET}."
        )


def _prepare_output_dir(output_dir):
    """Creates `output_dir` and checks that files can be written there."""
    output_dir = os.fspath(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write_check_"):
            pass
    except OSError as error:
        raise ValueError(
            f"export_onnx: cannot write to output_dir {output_dir!r} ({error.strerror or error}); pass a "
            "writable directory (it is created if missing)."
        ) from error
    return output_dir


def _unsupported_nodes(model_proto):
    """(op_type, node name) of nodes that no ONNX schema defines (ops tf2onnx left unconverted)."""
    import onnx

    opsets = {entry.domain: entry.version for entry in model_proto.opset_import}
    found = []

    def walk(graph):
        for node in graph.node:
            domain = node.domain or ""
            try:
                onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
            except Exception:  # onnx raises SchemaError, whose import path varies by version
                found.append((node.op_type, node.name))
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(model_proto.graph)
    return found


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _tf_function(graph):
    import tensorflow as tf

    specs = [tf.TensorSpec([d if isinstance(d, int) else None for d in i.shape], i.dtype, name=i.name)
             for i in graph.inputs]
    names = [i.name for i in graph.inputs]

    def traced(*tensors):
        return graph.function(dict(zip(names, tensors, strict=True)))

    return tf.function(traced, input_signature=specs, autograph=False), specs


def _name_axes(model_proto, graph):
    """Gives the dynamic input axes their names (`batch`, `sequence`, ...) instead of tf2onnx's `unk__N`."""
    by_name = {i.name: i for i in graph.inputs}
    for value in model_proto.graph.input:
        spec = by_name.get(value.name)
        if spec is None:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, spec.shape, strict=True):
            if isinstance(size, str):
                dim.dim_param = size


@contextlib.contextmanager
def _optimizers_without_backups():
    """tf2onnx's graph optimizers without their error backups, for the duration of one conversion.

    By default tf2onnx deep-copies the whole graph, weights included, before each of its optimizers, to restore it
    if one fails; those copies were most of a conversion's memory (a 4-layer, 45 MB BERT: 4.2 GB peak with them,
    2.6 GB without; a BERT-base export peaked near 20 GB). kzoo's graphs convert without an optimizer failing,
    and one that failed would now end the export with its error instead of being skipped. `TF2ONNX_CATCH_ERRORS`
    is tf2onnx's switch for it ("FALSE" turns the backups off); a value the user set is left as it is.
    """
    if "TF2ONNX_CATCH_ERRORS" in os.environ:
        yield
        return
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop("TF2ONNX_CATCH_ERRORS", None)


def _without_rewritten_fields(node_proto):
    """A new NodeProto (in a protobuf arena of its own) with the fields of `node_proto` that tf2onnx's
    `Node.update_proto` does not write again: all but its inputs, outputs and attributes."""
    fresh = type(node_proto)()
    for field, value in node_proto.ListFields():
        if field.name in ("input", "output", "attribute"):
            continue
        if getattr(field, "is_repeated", False) or getattr(field, "label", None) == 3:  # 3: LABEL_REPEATED
            getattr(fresh, field.name).extend(value)
        elif field.message_type is not None:
            getattr(fresh, field.name).CopyFrom(value)
        else:
            setattr(fresh, field.name, value)
    return fresh


@contextlib.contextmanager
def _node_protos_rebuilt_on_update():
    """tf2onnx rewrites each node's attributes into a new NodeProto, for the duration of one conversion.

    After every one of its graph optimizers, tf2onnx's `Node.update_proto` deletes a node's attributes and copies
    them in again, constants' weight tensors included. Under the upb protobuf runtime (protobuf >= 4, the default)
    a deleted submessage's memory is only freed with its whole message, so each pass added one more copy of every
    weight: converting a 2-layer GPT with GPT-2's 50,257-token embedding (214 MB of weights) peaked at 18.1 GB, and
    GPT-2 small could not be exported on a 24 GB machine. Writing into a fresh NodeProto each time lets the old one
    (and its copies) go. The patch is undone on exit; it relies on `Node._op`, the proto tf2onnx 1.17 keeps.
    """
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(node, external_tensor_storage=None):
        node._op = _without_rewritten_fields(node._op)
        original(node, external_tensor_storage)

    Node.update_proto = update_proto
    try:
        yield
    finally:
        Node.update_proto = original


def _convert(graph, path, opset, metadata):
    """Traces `graph`, converts it with tf2onnx, checks and saves it at `path`. Returns the seconds spent."""
    import onnx
    import tf2onnx

    function, specs = _tf_function(graph)
    capture = _LogCapture()
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(capture)
    started = time.perf_counter()
    try:
        with _optimizers_without_backups(), _node_protos_rebuilt_on_update():
            model_proto, _ = tf2onnx.convert.from_function(
                function, input_signature=specs, opset=opset, custom_op_handlers=CUSTOM_OP_HANDLERS
            )
    except Exception as error:
        detail = "; ".join(capture.messages[-3:])
        raise OnnxExportError(
            f"export_onnx: tf2onnx failed to convert the {graph.name!r} graph ({graph.description}) at opset "
            f"{opset}: {type(error).__name__}: {error}" + (f" [tf2onnx log: {detail}]" if detail else "")
        ) from error
    finally:
        tf2onnx_logger.removeHandler(capture)
    seconds = time.perf_counter() - started
    unsupported = _unsupported_nodes(model_proto)
    if unsupported:
        ops = sorted({op for op, _ in unsupported})
        nodes = ", ".join(f"{name} ({op})" for op, name in unsupported[:5])
        raise OnnxExportError(
            f"export_onnx: tf2onnx could not convert the TensorFlow op(s) {', '.join(ops)} of the {graph.name!r} "
            f"graph at opset {opset} (nodes: {nodes}). Rewrite that computation with ops ONNX supports (e.g. "
            "concatenation instead of an in-place cache update) or try another opset."
        )
    _name_axes(model_proto, graph)
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model_proto.doc_string = graph.description
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, path)
    return seconds


def _describe(graph, model_proto_path):
    import onnx

    proto = onnx.load(model_proto_path, load_external_data=False)
    outputs = []
    for value in proto.graph.output:
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                for d in value.type.tensor_type.shape.dim]
        outputs.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(
            value.type.tensor_type.elem_type).name, "shape": dims})
    return {
        "file": graph.filename,
        "description": graph.description,
        "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape), "kind": i.kind} for i in graph.inputs],
        "outputs": outputs,
    }


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _check_quantization(model):
    """Refuses a model Keras quantized to float8: tf2onnx has no float8 type. (int8/int4 models convert with parity,
    but tf2onnx folds their dequantization into float weights, so the graph is no smaller; `--int8` on the float
    model gives ONNX Runtime's own int8 graphs.)"""
    modes = {layer.quantization_mode for layer in model._flatten_layers()} - {None}
    if "float8" in modes:
        raise OnnxExportError("a float8-quantized model cannot be exported to ONNX (tf2onnx has no float8 type); "
                              "export the float model with --int8 for ONNX Runtime's int8 graphs instead.")


def export_onnx(model, output_dir, opset=DEFAULT_OPSET, decoding=True, labels=None):
    """Exports a kzoo model to ONNX graphs plus an `export.json` (see `kzoo.export.onnx`).

    Args:
        model: a kzoo backbone (`BertBackbone`, `GPTBackbone`, `Seq2SeqBackbone`) or task
            (`BertClassifier`, `BertTokenClassifier`, `BertSpanQA`, `BertPretrainer`,
            `GPTCausalLM`, `Seq2SeqLM`), float32, under the TensorFlow backend.
        output_dir: str or path; created if missing; existing files of the same names are
            replaced.
        opset: int in [13, 18], the ONNX opset (default 17).
        decoding: bool, also export the decoding graphs of `GPTCausalLM` / `Seq2SeqLM`
            (prefill + decoder with past, and the encoder for seq2seq) that
            `kzoo.export.onnx_generate.OnnxGenerator` runs.
        labels: class or tag names in id order of a `BertClassifier` / `BertTokenClassifier` (default "0",
            "1", ...), written to `labels.json` and `export.json`, as the SavedModel export records them.

    Returns:
        dict, the contents written to `export.json`: `opset`, `tf2onnx_version`,
        `model_class`, `family`, `int_dtype` ("int32"), `graphs` (name -> file, inputs,
        outputs, conversion seconds) and for generative models `decoding` (sizes).

    Raises:
        ValueError: unsupported model type, bad opset, `output_dir` not writable, labels that do not match the
            classes.
        OnnxExportError: not the TensorFlow backend, or tf2onnx failed / left an op
            unconverted (the message names the op and the graph).

    Example:
        >>> export_onnx(kzoo.models.BertClassifier(backbone, num_classes=2), "out/onnx")
        >>> session = onnxruntime.InferenceSession("out/onnx/model.onnx")
        >>> session.run(["logits"], {"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    """
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from kzoo.export import serving
    from kzoo.models.backbone import backbone_of
    from kzoo.models.lora import merged_copy

    _check_quantization(model)
    model = merged_copy(model)  # a LoRA model: one matmul per projection, as `model.save` writes it
    family, graphs = export_graphs(model, decoding)
    labels = serving.class_labels(model, labels)
    _check_opset(opset)
    require_tensorflow()
    output_dir = _prepare_output_dir(output_dir)
    metadata = {
        "format": "kzoo-onnx/1",
        "model_class": type(model).__name__,
        "family": family,
        "opset": opset,
        "int_dtype": "int32",
        "tf2onnx_version": tf2onnx.__version__,
        "onnx_version": onnx.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "config": _json_safe(backbone_of(model).get_config()),
        "graphs": {},
    }
    if family in ("gpt", "seq2seq") and any(g.name != "model" for g in graphs):
        metadata["decoding"] = decoder_sizes(model)
    if labels is not None:
        metadata["labels"] = labels
        with open(os.path.join(output_dir, LABELS_FILE), "w", encoding="utf-8") as handle:
            json.dump({"labels": labels}, handle, indent=1)
    props = {"kzoo.model_class": type(model).__name__, "kzoo.family": family, "tf2onnx.version": tf2onnx.__version__}
    for graph in graphs:
        path = os.path.join(output_dir, graph.filename)
        seconds = _convert(graph, path, opset, {**props, "kzoo.graph": graph.name})
        metadata["graphs"][graph.name] = {**_describe(graph, path), "conversion_seconds": round(seconds, 3)}
    with open(os.path.join(output_dir, METADATA_FILE), "w") as handle:
        json.dump(metadata, handle, indent=2)
    return metadata


def load_metadata(export_dir):
    """The `export.json` of `export_dir`; ValueError when the directory holds no kzoo ONNX export."""
    path = os.path.join(os.fspath(export_dir), METADATA_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"{export_dir!r} holds no {METADATA_FILE}; pass the output_dir of kzoo.export.export_onnx."
        )
    with open(path) as handle:
        return json.load(handle)
