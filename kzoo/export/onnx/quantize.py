"""`quantize_onnx`: int8 dynamic quantization of the graphs of an `export_onnx` directory.

Weight-bearing `MatMul` (and `Gemm`, rewritten as `MatMul` first) nodes become `MatMulInteger` with int8 weights;
each `name.onnx` gets a `name.int8.onnx` beside it, recorded in `export.json`.
"""

import json
import logging
import os
import tempfile

from kzoo.export.onnx.convert import METADATA_FILE, load_metadata

INT8_SUFFIX = ".int8.onnx"


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
