"""ONNX export of kzoo models through tf2onnx, int8 dynamic quantization, and a parity check.

`export_onnx(model, output_dir)` writes one ONNX graph per entry point, traced from a
`tf.function` of the Keras model (TensorFlow backend) and converted with
`tf2onnx.convert.from_function`:

    output_dir/
      model.onnx                    the forward pass (every supported model)
      encoder_model.onnx            Seq2SeqLM: encoder + cross-attention keys/values
      decoder_model.onnx            GPTCausalLM / Seq2SeqLM: first decoding pass (no past)
      decoder_with_past_model.onnx  GPTCausalLM / Seq2SeqLM: later passes, past keys/values in,
                                    present = concat(past, new) out (Hugging Face `optimum` names)
      export.json                   opset, versions, model class, config, every graph's inputs/outputs
      labels.json                   BertClassifier / BertTokenClassifier: {"labels": [name of class 0, ...]}

Inputs keep the Keras input names (`token_ids`, `segment_ids`, `padding_mask`, ...) and
dtype: int32 ids and masks (1 = real token), float32 keys/values. Batch and sequence axes
are dynamic and carry names (`batch`, `sequence`, `past_sequence`, ...). Outputs are named
after the model's outputs (`logits`, `start_logits`, `sequence_output`, ...).

Every graph also outputs `invalid_inputs`, (batch,) bool: True for a row holding a token id outside
[0, V), a segment id outside [0, num_segments), a position id outside [0, max_sequence_length), a mask
position outside [0, sequence) or a mask value other than 0/1. Such a row's float outputs are NaN (its
bad values are replaced by 0 before any lookup); other rows are unaffected. ONNX `Gather` would
otherwise read id -1 as id V - 1, and ONNX Runtime's CUDA `Gather` does not bound-check. A client
that runs these graphs itself must check `invalid_inputs` (or the ids) before using the outputs;
`OnnxGenerator` raises ValueError.

Decoding graphs (`kzoo.export.onnx_generate.OnnxGenerator` drives them) use the models'
concatenating past path (`GPTBackbone.call_with_past`, `Seq2SeqBackbone.decode_with_past`):
the TensorFlow KV cache writes in place (`XlaDynamicUpdateSlice`), which tf2onnx cannot
convert. Past and present keys/values are `(batch, time, heads, head_dim)` float32, named
`past_key_values.{i}.key` / `.value` and `present.{i}.key` / `.value`; cross attention's are
`cross_attention.{i}.key` / `.value` `(batch, encoder_sequence, heads, head_dim)`.

Legend: b batch, s new tokens, p past tokens, t encoder tokens, h heads, k head dim, V vocabulary.
"""

import dataclasses
import json
import logging
import os
import tempfile
import time
import warnings

import numpy as np

from kzoo.export.errors import ExportError

MODEL_FILE = "model.onnx"
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
METADATA_FILE = "export.json"
LABELS_FILE = "labels.json"
INT8_SUFFIX = ".int8.onnx"

# Opset 17: the newest one tf2onnx 1.17 targets throughout (its table stops at 18, where only
# a couple of handlers have versions); onnxruntime 1.32 runs 17 and 18 alike. Tested: 13-18.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18

# fp32 parity (allclose semantics: |onnx - keras| <= atol + rtol * |keras|).
PARITY_RTOL = 1e-3
PARITY_ATOL = 1e-4


class OnnxExportError(ExportError):
    """The conversion to ONNX failed (an op tf2onnx cannot convert, a tf2onnx error)."""


class OnnxParityError(ExportError):
    """ONNX Runtime and Keras disagree beyond tolerance; `.report` holds every comparison."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class _Input:
    """One graph input: `shape` holds named dynamic axes (str) and fixed sizes (int);
    `kind` tells `verify_onnx` how to draw valid random values."""

    name: str
    dtype: str
    shape: tuple
    kind: str


@dataclasses.dataclass
class _Graph:
    """One exported entry point: `function` maps a dict of input tensors to a dict of outputs."""

    name: str
    filename: str
    inputs: list
    function: object
    description: str


# === Supported models ===


def _family(model):
    """("bert" | "gpt" | "seq2seq", is_task) of a supported model; ValueError otherwise."""
    from kzoo import models

    table = [
        (models.BertBackbone, "bert", False), (models.GPTBackbone, "gpt", False),
        (models.Seq2SeqBackbone, "seq2seq", False), (models.BertClassifier, "bert", True),
        (models.BertTokenClassifier, "bert", True), (models.BertSpanQA, "bert", True),
        (models.BertPretrainer, "bert", True), (models.GPTCausalLM, "gpt", True), (models.Seq2SeqLM, "seq2seq", True),
    ]
    for cls, family, is_task in table:
        if type(model) is cls or isinstance(model, cls):
            return family, is_task
    names = ", ".join(cls.__name__ for cls, _, _ in table)
    raise ValueError(
        f"export_onnx: {type(model).__name__} is not a kzoo model it can export; pass one of {names} "
        "(e.g. kzoo.models.BertClassifier(backbone, num_classes=2))."
    )


def _backbone(model):
    return model.backbone if hasattr(model, "backbone") else model


def _sizes(model):
    """Decoder sizes that the decoding graphs and the generator need."""
    backbone = _backbone(model)
    config = backbone.get_config()
    blocks = backbone.decoder_blocks
    attention = blocks[0].self_attention
    return {
        "num_layers": len(blocks),
        "num_heads": attention.num_heads,
        "head_dim": attention.head_dim,
        "vocabulary_size": backbone.token_embedding.vocabulary_size,
        "max_sequence_length": config["max_sequence_length"],
        "position_embedding": config["position_embedding"],
    }


# === Graph definitions ===


def _ids(name, axis="sequence", kind=None):
    return _Input(name, "int32", ("batch", axis), kind or name)


def _forward_graph(model, family):
    from keras import ops

    names = list(model.input.keys()) if isinstance(model.input, dict) else None
    if names is None:
        raise ValueError(f"export_onnx: {type(model).__name__} has no named (dict) inputs to export.")
    axes = {"encoder_token_ids": "encoder_sequence", "encoder_padding_mask": "encoder_sequence",
            "decoder_token_ids": "decoder_sequence", "decoder_padding_mask": "decoder_sequence",
            "mask_positions": "mask_positions"}
    kinds = {"encoder_token_ids": "token_ids", "decoder_token_ids": "token_ids", "encoder_padding_mask": "padding_mask",
             "decoder_padding_mask": "padding_mask"}
    inputs = [_ids(name, axes.get(name, "sequence"), kinds.get(name)) for name in names]

    def forward(tensors):
        outputs = model(tensors, training=False)
        if not isinstance(outputs, dict):
            outputs = {"logits": outputs}
        return {name: ops.cast(value, "float32") for name, value in outputs.items()}

    return _Graph("model", MODEL_FILE, inputs, forward, f"{type(model).__name__} forward pass")


def _past_inputs(sizes, prefix, axis):
    shape = ("batch", axis, sizes["num_heads"], sizes["head_dim"])
    return [
        _Input(f"{prefix}.{index}.{part}", "float32", shape, "float")
        for index in range(sizes["num_layers"]) for part in ("key", "value")
    ]


def _pairs(tensors, prefix, num_layers):
    return [(tensors[f"{prefix}.{i}.key"], tensors[f"{prefix}.{i}.value"]) for i in range(num_layers)]


def _named_pairs(pairs, prefix):
    outputs = {}
    for index, (keys, values) in enumerate(pairs):
        outputs[f"{prefix}.{index}.key"] = keys
        outputs[f"{prefix}.{index}.value"] = values
    return outputs


def _gpt_decoding_graphs(model):
    """`decoder_model` (prefill) and `decoder_with_past_model` of a `GPTCausalLM`."""
    from keras import ops

    backbone, sizes = model.backbone, _sizes(model)
    learned = sizes["position_embedding"] == "learned"

    def run(tensors, past):
        if past is None:
            past = backbone.empty_past(ops.shape(tensors["token_ids"])[0])
        hidden, present = backbone.call_with_past(
            tensors["token_ids"], past, tensors["padding_mask"], tensors.get("position_ids")
        )
        logits = ops.cast(backbone.token_logits(hidden), "float32")  # (b, s, V)
        return {"logits": logits, **_named_pairs(present, "present")}

    def prefill(tensors):
        return run(tensors, None)

    def with_past(tensors):
        return run(tensors, _pairs(tensors, "past_key_values", sizes["num_layers"]))

    positions = [_ids("position_ids")] if learned else []
    first = [_ids("token_ids"), _ids("padding_mask"), *positions]
    later = [_ids("token_ids"), _ids("padding_mask", "past_sequence + sequence", "past_padding_mask"), *positions,
             *_past_inputs(sizes, "past_key_values", "past_sequence")]
    return [
        _Graph("decoder", DECODER_FILE, first, prefill, "prompt pass: logits and the first present keys/values"),
        _Graph("decoder_with_past", DECODER_WITH_PAST_FILE, later, with_past,
               "one decoding pass after past keys/values: present = concat(past, new) on the time axis"),
    ]


def _seq2seq_decoding_graphs(model):
    """`encoder_model`, `decoder_model` and `decoder_with_past_model` of a `Seq2SeqLM`."""
    from keras import ops

    backbone, sizes = model.backbone, _sizes(model)
    layers = sizes["num_layers"]

    def encode(tensors):
        encoded = backbone.encode(tensors["encoder_token_ids"], tensors["encoder_padding_mask"], training=False)
        caches = backbone.cross_attention_caches(encoded)  # one (b, 2, t, h, k) per block
        pairs = [(cache[:, 0], cache[:, 1]) for cache in caches]
        return {"encoder_sequence_output": ops.cast(encoded, "float32"), **_named_pairs(pairs, "cross_attention")}

    def run(tensors, past):
        if past is None:
            past = backbone.empty_decoder_past(ops.shape(tensors["decoder_token_ids"])[0])
        cross = [ops.stack(pair, axis=1) for pair in _pairs(tensors, "cross_attention", layers)]
        hidden, present = backbone.decode_with_past(
            tensors["decoder_token_ids"], past, cross, tensors["encoder_padding_mask"]
        )
        logits = ops.cast(backbone.token_logits(hidden), "float32")
        return {"logits": logits, **_named_pairs(present, "present")}

    def prefill(tensors):
        return run(tensors, None)

    def with_past(tensors):
        return run(tensors, _pairs(tensors, "past_key_values", layers))

    encoder_inputs = [_ids("encoder_token_ids", "encoder_sequence", "token_ids"),
                      _ids("encoder_padding_mask", "encoder_sequence", "padding_mask")]
    decoder_inputs = [_ids("decoder_token_ids", "decoder_sequence", "token_ids"),
                      _ids("encoder_padding_mask", "encoder_sequence", "padding_mask"),
                      *_past_inputs(sizes, "cross_attention", "encoder_sequence")]
    return [
        _Graph("encoder", ENCODER_FILE, encoder_inputs, encode,
               "encoder pass: encoder outputs and every decoder block's cross-attention keys/values"),
        _Graph("decoder", DECODER_FILE, decoder_inputs, prefill, "first decoder pass (no past)"),
        _Graph("decoder_with_past", DECODER_WITH_PAST_FILE,
               decoder_inputs + _past_inputs(sizes, "past_key_values", "past_decoder_sequence"), with_past,
               "one decoder pass after past keys/values: present = concat(past, new) on the time axis"),
    ]


def _graphs(model, decoding):
    family, is_task = _family(model)
    graphs = [_forward_graph(model, family)]
    if decoding and is_task and family == "gpt":
        graphs += _gpt_decoding_graphs(model)
    if decoding and is_task and family == "seq2seq":
        graphs += _seq2seq_decoding_graphs(model)
    config = _backbone(model).get_config()
    return family, [dataclasses.replace(graph, function=_guarded(graph, config)) for graph in graphs]


# === Input range guard ===


def _input_ranges(graph, config):
    """{input name: (low, high)}: the valid values (low <= value < high; None: the length of `token_ids`) of
    every integer input of `graph`."""
    ranges = {}
    for spec in graph.inputs:
        if spec.kind == "token_ids":
            ranges[spec.name] = (0, int(config["vocabulary_size"]))
        elif spec.kind == "segment_ids":
            ranges[spec.name] = (0, int(config.get("num_segments", 2)))
        elif spec.kind == "position_ids":
            ranges[spec.name] = (0, int(config["max_sequence_length"]))
        elif spec.kind == "mask_positions":
            ranges[spec.name] = (0, None)
        elif spec.kind in ("padding_mask", "past_padding_mask"):
            ranges[spec.name] = (0, 2)
    return ranges


def _guarded(graph, config):
    """`graph.function` with an in-graph range check of its integer inputs.

    ONNX `Gather` takes indices in [-V, V) (id -1 silently reads row V - 1) and ONNX Runtime's CUDA kernel does not
    bound-check at all, so every id, segment id, position and mask value is checked in the graph: a row holding
    one outside its range gets `invalid_inputs` True and NaN in every float output; the bad values are replaced by
    0 before any lookup, so no kernel reads out of bounds. Valid rows are computed exactly as before.
    Shapes: every input and output has the batch first; `invalid_inputs` is (b,) bool.
    """
    ranges = _input_ranges(graph, config)

    def guarded(tensors):
        import tensorflow as tf

        bad_rows, safe = [], dict(tensors)
        for name, (low, high) in ranges.items():
            value = tensors[name]
            if high is None:
                high = tf.shape(tensors["token_ids"])[1]
            bad = (value < low) | (value >= high)
            bad_rows.append(tf.reduce_any(tf.reshape(bad, [tf.shape(value)[0], -1]), axis=1))
            safe[name] = tf.where(bad, tf.zeros_like(value), value)
        outputs = graph.function(safe)
        invalid = tf.reduce_any(tf.stack(bad_rows, axis=1), axis=1)  # (b,)
        guarded_outputs = {}
        for key, value in outputs.items():
            if value.dtype.is_floating:
                rows = tf.reshape(invalid, [-1] + [1] * (value.shape.rank - 1))  # broadcast over the row
                value = tf.where(rows, tf.constant(float("nan"), value.dtype), value)
            guarded_outputs[key] = value
        guarded_outputs["invalid_inputs"] = invalid
        return guarded_outputs

    return guarded


# === Conversion ===


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


def _require_tensorflow():
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


def export_onnx(model, output_dir, opset=DEFAULT_OPSET, decoding=True, labels=None):
    """Exports a kzoo model to ONNX graphs plus an `export.json` (see the module docstring).

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

    family, graphs = _graphs(model, decoding)
    labels = serving.class_labels(model, labels)
    _check_opset(opset)
    _require_tensorflow()
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
        "config": _json_safe(_backbone(model).get_config()),
        "graphs": {},
    }
    if family in ("gpt", "seq2seq") and any(g.name != "model" for g in graphs):
        metadata["decoding"] = _sizes(model)
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


# === Quantization ===


def _gemm_to_matmul(model_proto):
    """Rewrites `Gemm` nodes with a constant weight as `MatMul` (+ `Add` for the bias).

    tf2onnx emits `Gemm` for many projections, and onnxruntime's dynamic quantization
    only handles `MatMul` (`MatMulInteger`). `Y = alpha * A @ op(B) + beta * C` becomes
    `A @ (alpha * op(B))` `+ beta * C`, with the transposed, scaled weight stored once.
    """
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = initializers.get(node.input[1]) if node.op_type == "Gemm" else None
        if weight is None or attributes.get("transA", 0):
            nodes.append(node)
            continue
        value = numpy_helper.to_array(weight)
        value = (value.T if attributes.get("transB", 0) else value) * attributes.get("alpha", 1.0)
        weight_name = f"{node.name}_matmul_weight"
        graph.initializer.append(numpy_helper.from_array(value.astype(value.dtype), weight_name))
        if len(node.input) < 3 or not node.input[2]:
            nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], list(node.output), name=node.name))
            continue
        product = f"{node.name}_matmul"
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=product))
        bias = node.input[2]
        beta = attributes.get("beta", 1.0)
        if beta != 1.0:
            scaled = f"{node.name}_bias"
            graph.initializer.append(numpy_helper.from_array(
                (numpy_helper.to_array(initializers[bias]) * beta).astype(value.dtype), scaled))
            bias = scaled
        nodes.append(helper.make_node("Add", [product, bias], list(node.output), name=f"{node.name}_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model_proto


def quantize_onnx(export_dir, graphs=None, per_channel=False):
    """int8 dynamic quantization (onnxruntime.quantization.quantize_dynamic) of exported graphs.

    The graph is first constant-folded (onnxruntime's `quant_pre_process`, so reshaped
    weights become plain initializers) and its constant-weight `Gemm` nodes are
    rewritten as `MatMul`; then every `MatMul` with a constant weight becomes
    `MatMulInteger` with int8 weights and activations quantized on the fly (uint8).
    Activation x activation products (attention scores) and the embedding `Gather`
    stay float32, so ids index an unquantized table. Each `name.onnx` gets a
    `name.int8.onnx` beside it, recorded in `export.json` (`int8_file`).

    Args:
        export_dir: an `export_onnx` output directory.
        graphs: names of graphs to quantize ("model", "decoder", ...); None: all.
        per_channel: bool, one scale per output channel (more accurate, larger).

    Returns:
        dict graph name -> path of the int8 model.

    Raises:
        ValueError: no export in `export_dir`, or an unknown graph name.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    metadata = load_metadata(export_dir)
    names = list(metadata["graphs"]) if graphs is None else list(graphs)
    unknown = sorted(set(names) - set(metadata["graphs"]))
    if unknown:
        raise ValueError(
            f"quantize_onnx: no graph named {unknown} in {export_dir!r}; it has {sorted(metadata['graphs'])}."
        )
    written = {}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint through the root logger
    try:
        for name in names:
            entry = metadata["graphs"][name]
            source = os.path.join(export_dir, entry["file"])
            target = source[: -len(".onnx")] + INT8_SUFFIX
            with tempfile.TemporaryDirectory() as scratch:
                folded = os.path.join(scratch, "folded.onnx")
                quant_pre_process(source, folded, skip_symbolic_shape=True)
                proto = _gemm_to_matmul(onnx.load(folded))
            constants = {tensor.name for tensor in proto.graph.initializer}
            weighted = [node.name for node in proto.graph.node
                        if node.op_type == "MatMul" and any(i in constants for i in node.input)]
            quantize_dynamic(proto, target, op_types_to_quantize=["MatMul"], nodes_to_quantize=weighted,
                             per_channel=per_channel, weight_type=QuantType.QInt8)
            entry["int8_file"] = os.path.basename(target)
            written[name] = target
    finally:
        root.setLevel(level)
    metadata["int8"] = {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8",
                        "activations": "uint8, dynamic", "op_types": ["MatMul", "Gemm (rewritten as MatMul)"],
                        "per_channel": per_channel}
    with open(os.path.join(export_dir, METADATA_FILE), "w") as handle:
        json.dump(metadata, handle, indent=2)
    return written


# === Parity ===


def _dims(batch, length, extra):
    return {"batch": batch, "sequence": length, "decoder_sequence": length, "mask_positions": min(length, 3),
            "encoder_sequence": extra["encoder_sequence"], "past_sequence": extra["past_sequence"],
            "past_decoder_sequence": extra["past_sequence"],
            "past_sequence + sequence": extra["past_sequence"] + length}


def _random_inputs(graph_entry, config, batch, length, extra, rng):
    """Valid random inputs for one exported graph: ids in range, masks with random padding
    (right padding; left padding over the past for decoding graphs; with 3 rows, the last
    row of a forward pass is fully padded), float keys/values ~ N(0, 1)."""
    dims = _dims(batch, length, extra)
    vocabulary = config["vocabulary_size"]
    values = {}
    for spec in graph_entry["inputs"]:
        shape = tuple(dims[d] if isinstance(d, str) else d for d in spec["shape"])
        kind = spec["kind"]
        if kind == "token_ids":
            value = rng.integers(0, vocabulary, shape)
        elif kind == "segment_ids":
            value = rng.integers(0, config.get("num_segments", 2), shape)
        elif kind == "padding_mask":
            lengths = rng.integers(1, shape[1] + 1, shape[0])
            if graph_entry["file"] == MODEL_FILE and shape[0] >= 3:
                lengths[-1] = 0
            value = np.arange(shape[1])[None, :] < lengths[:, None]
        elif kind == "past_padding_mask":
            pads = rng.integers(0, extra["past_sequence"] + 1, shape[0])  # left padding inside the past
            value = np.arange(shape[1])[None, :] >= pads[:, None]
        elif kind == "position_ids":
            top = max(config["max_sequence_length"] - shape[1], 1)
            value = rng.integers(0, top, (shape[0], 1)) + np.arange(shape[1])[None, :]
        elif kind == "mask_positions":
            value = rng.integers(0, length, shape)
        else:
            value = rng.normal(0.0, 1.0, shape)
        values[spec["name"]] = value.astype(spec["dtype"])
    return values


def _compare(actual, expected, rtol, atol):
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    difference = np.abs(actual - expected)
    finite = bool(np.isfinite(actual).all())
    significant = np.abs(expected) > atol
    relative = float((difference[significant] / np.abs(expected[significant])).max()) if significant.any() else 0.0
    ok = finite and actual.shape == expected.shape and bool(np.all(difference <= atol + rtol * np.abs(expected)))
    return {"max_abs": float(difference.max()) if difference.size else 0.0, "max_rel": relative, "ok": ok,
            "finite": finite}


def verify_onnx(model, export_dir, batch_sizes=(1, 3), lengths=(1, 5, 12), rtol=PARITY_RTOL, atol=PARITY_ATOL,
                graphs=None, int8=True, seed=0, verbose=False):
    """Runs Keras (TensorFlow) and ONNX Runtime on the same random inputs and compares outputs.

    Every exported graph is checked for every batch size and length (decoding graphs also
    with a past of 4 tokens and an encoder length of 6), with random padding (a fully
    padded row in forward passes with 3 rows). The fp32 check is `np.allclose`
    semantics: `|onnx - keras| <= atol + rtol * |keras|` element-wise, and no NaN/inf.
    int8 graphs (from `quantize_onnx`) are reported (`ok` is informational) but never fail.

    Args:
        model: the Keras model that was exported (same weights).
        export_dir: the `export_onnx` output directory.
        batch_sizes, lengths: shapes to try; lengths above the model's
            `max_sequence_length` are skipped.
        rtol, atol: fp32 tolerances (default 1e-3, 1e-4).
        graphs: names of graphs to check (None: all).
        int8: bool, also report the int8 graphs that exist.
        seed: int, for the random inputs.
        verbose: bool, print one line per comparison.

    Returns:
        list of dicts, one per (graph, precision, batch, length, output): `graph`,
        `precision` ("fp32" / "int8"), `batch`, `length`, `output`, `shape`, `max_abs`,
        `max_rel` (over elements with |keras| > atol), `ok`, and for int8 logits
        `argmax_agreement` (fraction of positions whose argmax matches Keras).

    Raises:
        OnnxParityError: an fp32 output differs beyond tolerance (or is not finite); the
            message names the graph, output, shape and differences.
    """
    import onnxruntime as ort

    _require_tensorflow()
    metadata = load_metadata(export_dir)
    if metadata["model_class"] != type(model).__name__:
        raise ValueError(
            f"verify_onnx: {export_dir!r} holds a {metadata['model_class']} export but the model is a "
            f"{type(model).__name__}; pass the model that was exported."
        )
    _, all_graphs = _graphs(model, decoding=True)
    functions = {graph.name: graph.function for graph in all_graphs}
    config = _backbone(model).get_config()
    rng = np.random.default_rng(seed)
    extra = {"past_sequence": 4, "encoder_sequence": 6}
    report = []
    names = list(metadata["graphs"]) if graphs is None else list(graphs)
    for name in names:
        entry = metadata["graphs"][name]
        sessions = [("fp32", entry["file"])]
        if int8 and entry.get("int8_file"):
            sessions.append(("int8", entry["int8_file"]))
        sessions = [(precision, _session(ort, os.path.join(export_dir, file))) for precision, file in sessions]
        for batch in batch_sizes:
            for length in lengths:
                if length + extra["past_sequence"] > config["max_sequence_length"]:
                    continue
                feeds = _random_inputs(entry, config, batch, length, extra, rng)
                with warnings.catch_warnings():
                    # One-token inputs are checked on purpose; Keras warns about their size-1 softmax axis.
                    warnings.filterwarnings("ignore", message="You are using a softmax over axis")
                    expected = {key: np.asarray(value) for key, value in functions[name](
                        {key: _tensor(value) for key, value in feeds.items()}).items()}
                for precision, session in sessions:
                    output_names = [o.name for o in session.get_outputs()]
                    for output, actual in zip(output_names, session.run(output_names, feeds), strict=True):
                        row = {"graph": name, "precision": precision, "batch": batch, "length": length,
                               "output": output, "shape": list(actual.shape),
                               **_compare(actual, expected[output], rtol, atol)}
                        if precision == "int8" and "logits" in output and actual.ndim >= 2:
                            row["argmax_agreement"] = float(
                                np.mean(np.argmax(actual, -1) == np.argmax(expected[output], -1)))
                        if verbose:
                            print(_format_row(row))
                        report.append(row)
    failures = [row for row in report if row["precision"] == "fp32" and not row["ok"]]
    if failures:
        worst = max(failures, key=lambda row: row["max_abs"])
        raise OnnxParityError(
            f"verify_onnx: ONNX Runtime differs from Keras beyond rtol={rtol}, atol={atol} in {len(failures)} of "
            f"{sum(r['precision'] == 'fp32' for r in report)} fp32 comparisons; worst: graph {worst['graph']!r} "
            f"output {worst['output']!r} shape {tuple(worst['shape'])} (batch {worst['batch']}, length "
            f"{worst['length']}): max abs diff {worst['max_abs']:.3g}, max rel diff {worst['max_rel']:.3g}"
            + ("" if worst["finite"] else ", non-finite values") + f". Export dir: {export_dir!r}.",
            report,
        )
    return report


def _tensor(value):
    import tensorflow as tf

    return tf.constant(value)


def _session(ort, path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def verdict(row):
    """"ok" / "FAIL" for an fp32 row; "info" for int8 rows, whose drift is reported, not judged."""
    if row["precision"] != "fp32":
        return "info"
    return "ok" if row["ok"] else "FAIL"


def _format_row(row):
    text = (f"{row['graph']:>18} {row['precision']} b={row['batch']} s={row['length']:<3} {row['output']:<24} "
            f"max_abs={row['max_abs']:.3g} max_rel={row['max_rel']:.3g} {verdict(row)}")
    if "argmax_agreement" in row:
        text += f" argmax={row['argmax_agreement']:.3f}"
    return text


def summarize(report):
    """Per (graph, precision, output): the largest `max_abs` / `max_rel` and the smallest
    argmax agreement over all shapes, as a list of dicts (for printing or export.json)."""
    summary = {}
    for row in report:
        key = (row["graph"], row["precision"], row["output"])
        entry = summary.setdefault(key, {"graph": key[0], "precision": key[1], "output": key[2], "max_abs": 0.0,
                                         "max_rel": 0.0, "ok": True})
        entry["max_abs"] = max(entry["max_abs"], row["max_abs"])
        entry["max_rel"] = max(entry["max_rel"], row["max_rel"])
        entry["ok"] = entry["ok"] and row["ok"]
        if "argmax_agreement" in row:
            entry["argmax_agreement"] = min(entry.get("argmax_agreement", 1.0), row["argmax_agreement"])
    return list(summary.values())
