"""kzoo.export: trained models as TF Serving SavedModels and ONNX graphs, with verified parity.

SavedModel (`export_savedmodel`, `kzoo export --format savedmodel`): TF Serving's `<dir>/<name>/<version>/` layout,
a tensor-in `serving_default`, text-in signatures with the tokenizer in the graph (`classify`, `tag`, `answer`,
`embed`, `generate` with the decoding loop inside), warm-up requests, loadable by TensorFlow alone, by TF Hub's
`hub.KerasLayer` and by `keras.layers.TFSMLayer`. See `kzoo.export.serving` for the signatures and their
input policy, `verify_savedmodel` for the fresh-process parity check.

ONNX (`export_onnx`, `kzoo export --format onnx`): the forward graph of every model, and for GPT / seq2seq a
prefill graph and a decoder-with-past graph that `OnnxGenerator` drives with ONNX Runtime; `quantize_onnx` (int8
dynamic), `verify_onnx`. The `kzoo.export.onnx` package holds one module per job (graphs, convert, quantize,
verify), as the SavedModel side does (`serving`, `savedmodel`, `verify`).

The exporters need the TensorFlow Keras backend; `OnnxGenerator` needs only NumPy and onnxruntime.
"""

from kzoo.export.errors import ExportError
from kzoo.export.onnx import (
    DEFAULT_OPSET,
    OnnxExportError,
    OnnxParityError,
    export_onnx,
    load_metadata,
    quantize_onnx,
    summarize,
    verify_onnx,
)
from kzoo.export.onnx_generate import OnnxGenerator


def __getattr__(name):
    # The SavedModel exporter imports TensorFlow and Keras; load it on first use so that `OnnxGenerator` stays
    # importable on a machine with only onnxruntime.
    if name in ("export_savedmodel", "read_warmup_requests", "serving_signatures"):
        from kzoo.export import savedmodel

        return getattr(savedmodel, name)
    if name == "ServingSettings":
        from kzoo.export.serving import ServingSettings

        return ServingSettings
    if name in ("verify_savedmodel", "run_fresh"):
        from kzoo.export import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'kzoo.export' has no attribute {name!r}")


__all__ = [
    "DEFAULT_OPSET", "ExportError", "OnnxExportError", "OnnxGenerator", "OnnxParityError", "ServingSettings",
    "export_onnx", "export_savedmodel", "load_metadata", "quantize_onnx", "read_warmup_requests", "run_fresh",
    "serving_signatures", "summarize", "verify_onnx", "verify_savedmodel",
]
