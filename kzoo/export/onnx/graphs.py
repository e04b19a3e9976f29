"""The graphs an ONNX export holds, per model family, each guarded against out-of-range inputs.

`export_graphs(model, decoding)` lists them as `Graph`s (a name, a file name, the `GraphInput` specs and a function
from a dict of input tensors to a dict of outputs): the forward pass of every supported model, and for
`GPTCausalLM` / `Seq2SeqLM` the decoding graphs over the models' concatenating past path. Every function is wrapped
in the input range check that adds `invalid_inputs` (see `kzoo.export.onnx`). Nothing here converts: `convert`
traces and converts these functions, `verify` runs them against ONNX Runtime.

Legend: b batch, s new tokens, p past tokens, t encoder tokens, h heads (h_kv key/value heads), k head dim,
V vocabulary.
"""

import dataclasses

MODEL_FILE = "model.onnx"
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"


@dataclasses.dataclass(frozen=True)
class GraphInput:
    """One graph input: `shape` holds named dynamic axes (str) and fixed sizes (int);
    `kind` tells `verify_onnx` how to draw valid random values."""

    name: str
    dtype: str
    shape: tuple
    kind: str


@dataclasses.dataclass
class Graph:
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


def decoder_sizes(model):
    """Decoder sizes that the decoding graphs and the generator need."""
    from kzoo.models.backbone import backbone_of

    backbone = backbone_of(model)
    blocks = backbone.decoder_blocks
    attention = blocks[0].self_attention
    return {
        "num_layers": len(blocks),
        "num_heads": attention.num_heads,
        # Past and present keys/values hold only the key/value heads (fewer under grouped-query attention).
        "num_key_value_heads": getattr(attention, "num_key_value_heads", None) or attention.num_heads,
        "head_dim": attention.head_dim,
        "vocabulary_size": backbone.vocabulary_size,
        "max_sequence_length": backbone.max_sequence_length,
        "position_embedding": backbone.position_embedding,
    }


# === Graph definitions ===


def _ids(name, axis="sequence", kind=None):
    return GraphInput(name, "int32", ("batch", axis), kind or name)


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

    return Graph("model", MODEL_FILE, inputs, forward, f"{type(model).__name__} forward pass")


def _past_inputs(sizes, prefix, axis):
    shape = ("batch", axis, sizes["num_key_value_heads"], sizes["head_dim"])
    return [
        GraphInput(f"{prefix}.{index}.{part}", "float32", shape, "float")
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

    backbone, sizes = model.backbone, decoder_sizes(model)
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
        Graph("decoder", DECODER_FILE, first, prefill, "prompt pass: logits and the first present keys/values"),
        Graph("decoder_with_past", DECODER_WITH_PAST_FILE, later, with_past,
               "one decoding pass after past keys/values: present = concat(past, new) on the time axis"),
    ]


def _seq2seq_decoding_graphs(model):
    """`encoder_model`, `decoder_model` and `decoder_with_past_model` of a `Seq2SeqLM`."""
    from keras import ops

    backbone, sizes = model.backbone, decoder_sizes(model)
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
        logits = ops.cast(model.token_logits(hidden), "float32")  # the task's: with its logits bias (Marian)
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
        Graph("encoder", ENCODER_FILE, encoder_inputs, encode,
               "encoder pass: encoder outputs and every decoder block's cross-attention keys/values"),
        Graph("decoder", DECODER_FILE, decoder_inputs, prefill, "first decoder pass (no past)"),
        Graph("decoder_with_past", DECODER_WITH_PAST_FILE,
               decoder_inputs + _past_inputs(sizes, "past_key_values", "past_decoder_sequence"), with_past,
               "one decoder pass after past keys/values: present = concat(past, new) on the time axis"),
    ]


def export_graphs(model, decoding):
    """(family, [Graph]) of `model`: its forward pass and, with `decoding`, a GPT / seq2seq task's decoding graphs,
    each guarded by the input range check."""
    from kzoo.models.backbone import backbone_of

    family, is_task = _family(model)
    graphs = [_forward_graph(model, family)]
    if decoding and is_task and family == "gpt":
        graphs += _gpt_decoding_graphs(model)
    if decoding and is_task and family == "seq2seq":
        graphs += _seq2seq_decoding_graphs(model)
    backbone = backbone_of(model)
    return family, [dataclasses.replace(graph, function=_guarded(graph, backbone)) for graph in graphs]


# === Input range guard ===


def _input_ranges(graph, backbone):
    """{input name: (low, high)}: the valid values (low <= value < high; None: the length of `token_ids`) of
    every integer input of `graph`."""
    ranges = {}
    for spec in graph.inputs:
        if spec.kind == "token_ids":
            ranges[spec.name] = (0, int(backbone.vocabulary_size))
        elif spec.kind == "segment_ids" and getattr(backbone, "num_segments", 2):  # 0: ignored (DistilBERT)
            ranges[spec.name] = (0, int(getattr(backbone, "num_segments", 2)))
        elif spec.kind == "position_ids":
            ranges[spec.name] = (0, int(backbone.max_sequence_length))
        elif spec.kind == "mask_positions":
            ranges[spec.name] = (0, None)
        elif spec.kind in ("padding_mask", "past_padding_mask"):
            ranges[spec.name] = (0, 2)
    return ranges


def _guarded(graph, backbone):
    """`graph.function` with an in-graph range check of its integer inputs.

    ONNX `Gather` takes indices in [-V, V) (id -1 silently reads row V - 1) and ONNX Runtime's CUDA kernel does not
    bound-check at all, so every id, segment id, position and mask value is checked in the graph: a row holding
    one outside its range gets `invalid_inputs` True and NaN in every float output; the bad values are replaced by
    0 before any lookup, so no kernel reads out of bounds. Valid rows are computed exactly as before.
    Shapes: every input and output has the batch first; `invalid_inputs` is (b,) bool.
    """
    ranges = _input_ranges(graph, backbone)

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
