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
      *.int8.onnx                   with `quantize_onnx`: int8 weights; `int8_quality` judges them by the task
                                    metric (recorded in export.json as `int8_quality`)

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
convert. Past and present keys/values are `(batch, time, key_value_heads, head_dim)` float32 (the
key/value heads: fewer than the query heads under grouped-query attention), named
`past_key_values.{i}.key` / `.value` and `present.{i}.key` / `.value`; cross attention's are
`cross_attention.{i}.key` / `.value` `(batch, encoder_sequence, heads, head_dim)`.

Modules, one job each (the SavedModel side is split the same way: `savedmodel`, `serving`, `verify`):

    graphs.py    per family, the graphs to export (`Graph`, `GraphInput`) and the input range guard
    convert.py   `export_onnx`: tf2onnx conversion of each graph, `export.json` (`load_metadata` reads it)
    quantize.py  `quantize_onnx`: int8 dynamic quantization
    verify.py    `verify_onnx`: parity with Keras in ONNX Runtime; `summarize`, `verdict`
    quality.py   `int8_quality`: the int8 graphs' task metric on held-out examples vs the fp32 graphs' (the gate
                 of `kzoo export --int8 --verify`, default at most 1 point lost); `format_quality`

`kzoo.export.onnx_generate.OnnxGenerator` is the client: it runs the decoding graphs with NumPy and onnxruntime.
"""

from kzoo.export.onnx.convert import (
    DEFAULT_OPSET,
    LABELS_FILE,
    METADATA_FILE,
    OnnxExportError,
    export_onnx,
    load_metadata,
)
from kzoo.export.onnx.graphs import DECODER_FILE, DECODER_WITH_PAST_FILE, ENCODER_FILE, MODEL_FILE
from kzoo.export.onnx.quality import DEFAULT_MAX_DROP, format_quality, int8_quality
from kzoo.export.onnx.quantize import INT8_SUFFIX, quantize_onnx
from kzoo.export.onnx.verify import OnnxParityError, summarize, verdict, verify_onnx

__all__ = [
    "DECODER_FILE", "DECODER_WITH_PAST_FILE", "DEFAULT_MAX_DROP", "DEFAULT_OPSET", "ENCODER_FILE", "INT8_SUFFIX",
    "LABELS_FILE", "METADATA_FILE", "MODEL_FILE", "OnnxExportError", "OnnxParityError", "export_onnx",
    "format_quality", "int8_quality", "load_metadata", "quantize_onnx", "summarize", "verdict", "verify_onnx",
]
