"""SavedModel exports of Keras-quantized and LoRA models: `kzoo quantize` then `kzoo export --verify` serve with
parity to the quantized Keras model (tensor-in, text-in and the decode loop), and a LoRA model exports merged with
the outputs of the unmerged Keras model.

One export per test (each traces every signature, the GPT's decode loop included: tens of seconds).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kzoo import cli
from kzoo.export import savedmodel, verify
from kzoo.export.serving import ServingSettings
from kzoo.models.quantization import quantize_model
from tests.export import savedmodel_fixtures as fixtures

pytestmark = pytest.mark.backend("tensorflow", reason="SavedModel and ONNX exports trace TensorFlow graphs")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return fixtures.tokenizers(tmp_path_factory.mktemp("vocab"))


def _run_directory(root, model, files, labels=None):
    """A `kzoo train`-style run directory: model.keras and tokenizer/ (labels.json for a classifier)."""
    (root / "tokenizer").mkdir(parents=True)
    model.save(root / "model.keras")
    for name, path in files.items():
        (root / "tokenizer" / name).write_bytes(open(path, "rb").read())
    if labels:
        (root / "tokenizer" / "labels.json").write_text(json.dumps({"labels": labels}))
    return root


def _verified_rows(output):
    """The verify table's rows printed by `kzoo export --verify`: `{(request, output): (max abs, ok)}`."""
    table = output.split("verify (fresh TensorFlow-only process vs Keras):\n", 1)[1].splitlines()[1:]
    rows = {}
    for line in table:
        parts = line.split()
        if len(parts) >= 6 and parts[-1] in ("yes", "NO"):
            rows[(parts[0], parts[1])] = (float(parts[-3]), parts[-1] == "yes")
    return rows


@pytest.mark.parametrize(("kind", "mode"), [("gpt", "int8"), ("classifier", "int4")])
def test_kzoo_quantize_then_export_verify_serves_the_quantized_model(kind, mode, tmp_path, vocab, capsys):
    tokenizer, files = vocab["sentencepiece" if kind == "gpt" else "wordpiece"]
    labels = fixtures.CLASSES if kind == "classifier" else None
    run = _run_directory(tmp_path / "run", fixtures.build(kind, tokenizer.vocabulary_size), files, labels)
    assert cli.main(["quantize", str(run), "--mode", mode, "--output", str(tmp_path / "quantized")]) == 0
    assert sorted(os.listdir(tmp_path / "quantized" / "tokenizer")) == sorted([*files, *(["labels.json"] * bool(
        labels))])

    assert cli.main(["export", str(tmp_path / "quantized"), "--output", str(tmp_path / "served"), "--name", kind,
                     "--sequence-length", "24", "--max-new-tokens", "8", "--verify"]) == 0
    printed = capsys.readouterr().out
    rows = _verified_rows(printed)
    # --verify's tolerance: max abs <= 1e-5 + 1e-5 * max |output| per float output; strings and ids exactly.
    assert rows and all(ok for _, ok in rows.values()), printed
    expected = {"gpt": {"serving_default", "generate", "generate_with_options"},
                "classifier": {"serving_default", "classify", "classify_pair"}}[kind]
    assert {request.split("#")[0] for request, _ in rows} == expected
    assert max(error for (request, name), (error, _) in rows.items() if name == "logits") < 1e-4

    version = tmp_path / "served" / kind / "1"
    metadata = json.load(open(version / "assets.extra" / "kzoo_export.json"))
    assert metadata["weights"] == {"quantization": [mode], "lora": None}
    assert any(variable.dtype == tf.int8 for variable in tf.saved_model.load(str(version)).variables)
    if kind == "classifier":
        assert metadata["labels"] == fixtures.CLASSES


def test_a_lora_model_exports_merged_with_the_unmerged_outputs(tmp_path, vocab):
    tokenizer, files = vocab["wordpiece"]
    model = fixtures.build("classifier", tokenizer.vocabulary_size)
    model.backbone.enable_lora(2, alpha=4, targets=("query", "value", "up"))
    rng = np.random.default_rng(0)
    for variable in model.weights:  # adapters that matter (B starts at zero)
        if variable.path.endswith("lora_kernel_b"):
            variable.assign(rng.normal(0.0, 0.5, variable.shape).astype("float32"))
    result = savedmodel.export_savedmodel(model, tmp_path, tokenizer=tokenizer, labels=fixtures.CLASSES,
                                          settings=ServingSettings(sequence_length=24), tokenizer_files=files)
    served = tf.saved_model.load(result.path)
    assert not any("lora" in variable.name for variable in served.variables)  # merged into the kernels

    rows = verify.verify_savedmodel(model, result.path, tokenizer=tokenizer, labels=fixtures.CLASSES,
                                    settings=ServingSettings(sequence_length=24))
    logits = [row for row in rows if row.output == "logits"]
    assert logits and all(row.max_abs <= 1e-5 for row in logits), verify.format_rows(rows)
    # ... and the adapters do matter: the base model's logits are far from these.
    inputs = verify.random_tensor_requests(model)["serving_default#1"]
    adapted = model(inputs).numpy()
    for layer in model._flatten_layers():
        if getattr(layer, "lora_enabled", False):
            layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape, "float32"))
    assert np.abs(adapted - model(inputs).numpy()).max() > 1e-2
    metadata = json.load(open(os.path.join(result.path, "assets.extra", "kzoo_export.json")))
    assert metadata["weights"]["lora"] == {"rank": 2, "alpha": 4.0, "targets": ["query", "value", "up"],
                                           "merged": True}



def test_a_float8_model_is_refused_by_the_onnx_export_in_one_line(tmp_path):
    from kzoo.export.onnx import export_onnx
    from kzoo.export.onnx.convert import OnnxExportError

    model = fixtures.build("classifier", 60)
    quantize_model(model, "float8")
    with pytest.raises(OnnxExportError, match="float8-quantized model cannot be exported to ONNX") as refused:
        export_onnx(model, tmp_path / "onnx")
    assert "--int8" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "onnx").exists()  # refused before anything was written


def test_a_lora_model_exports_to_onnx_merged_with_the_unmerged_outputs(tmp_path):
    from kzoo.export.onnx import export_onnx, verify_onnx

    model = fixtures.build("classifier", 60)
    model.backbone.enable_lora(2, targets=("query", "value"))
    for variable in model.trainable_variables:  # adapters that matter (B starts at zero)
        if "lora_kernel_b" in variable.path:
            variable.assign(np.full(variable.shape, 0.05, "float32"))
    metadata = export_onnx(model, tmp_path / "onnx", decoding=False)
    import onnx

    graph = onnx.load(os.path.join(tmp_path / "onnx", metadata["graphs"]["model"]["file"])).graph
    assert not [tensor.name for tensor in graph.initializer if "lora" in tensor.name]  # merged, not two matmuls
    report = verify_onnx(model, tmp_path / "onnx")  # against the unmerged Keras model; raises on drift
    assert max(row["max_abs"] for row in report) <= 1e-5  # the fp32 bar for a merged LoRA export
