"""tools/bench_export.py: its FLOP count against the model's own matmul weights, the aggregation over rounds
(medians, ratios, the tokenizer's share, token equality), and a quick run of the encoder peers it had first."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "bench_export.py")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import bench_export  # noqa: E402


def test_bert_flops_counts_every_encoder_matmul():
    from kzoo import models

    sizes = bench_export.TINY
    backbone = models.BertBackbone(**sizes)
    # Independent count: every kernel inside the encoder blocks is a matmul applied once per token; the pooler's
    # once per sequence.
    kernels = {variable.path: math.prod(variable.shape) for variable in backbone.weights if "kernel" in variable.path}
    block_weights = sum(size for path, size in kernels.items() if path.startswith("encoder_block"))
    pooler = sum(size for path, size in kernels.items() if path.startswith("pooler"))
    assert block_weights and pooler
    batch, length = 3, 10
    attention = sizes["num_layers"] * 2 * 2 * length * length * sizes["hidden_dim"]  # scores and context
    expected = batch * (2 * length * block_weights + attention + 2 * pooler)
    assert bench_export.bert_flops(sizes, batch, length) == expected


@pytest.mark.backend("tensorflow", reason="pure Python on result rows, no backend involved: the TensorFlow run "
                                         "covers it")
def test_summarize_takes_the_median_over_rounds_and_ratios_to_the_references():
    rows = [
        # three rounds of the fp32 reference at batch 1 (median 10) and one at batch 8
        {"peer": "kzoo_onnx_fp32", "batch": 1, "median_ms": 12.0, "min_ms": 11.0, "round": 0},
        {"peer": "kzoo_onnx_fp32", "batch": 1, "median_ms": 10.0, "min_ms": 9.0, "round": 1},
        {"peer": "kzoo_onnx_fp32", "batch": 1, "median_ms": 9.0, "min_ms": 8.0, "round": 2},
        {"peer": "kzoo_onnx_fp32", "batch": 8, "median_ms": 40.0, "min_ms": 39.0, "round": 0},
        {"peer": "kzoo_onnx_int8", "batch": 1, "median_ms": 4.0, "min_ms": 4.0, "round": 0},
        {"peer": "kzoo_onnx_int8", "batch": 1, "median_ms": 6.0, "min_ms": 5.0, "round": 1},
        {"peer": "kzoo_savedmodel_int8", "batch": 1, "median_ms": 7.0, "min_ms": 6.0, "round": 0},
        {"peer": "kzoo_savedmodel", "batch": 8, "median_ms": 60.0, "min_ms": 50.0, "gflops_per_s": 3.0, "round": 0},
        {"peer": "kzoo_savedmodel", "batch": 8, "median_ms": 50.0, "min_ms": 45.0, "gflops_per_s": 5.0, "round": 1},
        {"peer": "hf_torch", "round": 1, "error": "exit 1: boom"},
    ]
    summary = bench_export.summarize(rows, "kzoo_onnx_fp32", "kzoo_onnx_int8")
    by_key = {(entry["peer"], entry.get("batch")): entry for entry in summary}
    reference = by_key[("kzoo_onnx_fp32", 1)]
    assert (reference["median_ms"], reference["min_ms"], reference["rounds"]) == (10.0, 9.0, 3)
    assert reference["round_medians_ms"] == [12.0, 10.0, 9.0]
    assert reference["requests_per_s"] == pytest.approx(100.0)
    assert reference["vs_kzoo_onnx_fp32"] == 1.0
    saved = by_key[("kzoo_savedmodel", 8)]  # an even number of rounds: the mean of the middle two
    assert (saved["median_ms"], saved["gflops_per_s"]) == (55.0, 4.0)
    assert saved["vs_kzoo_onnx_fp32"] == pytest.approx(55.0 / 40.0)
    assert saved["requests_per_s"] == pytest.approx(8 * 1000 / 55.0)
    assert "vs_kzoo_onnx_int8" not in saved  # not an int8 peer
    int8 = by_key[("kzoo_savedmodel_int8", 1)]
    assert int8["vs_kzoo_onnx_int8"] == pytest.approx(7.0 / 5.0)
    assert int8["vs_kzoo_onnx_fp32"] == pytest.approx(7.0 / 10.0)
    assert by_key[("hf_torch", None)] == {"peer": "hf_torch", "error": "exit 1: boom"}
    # no reference timing at a batch: no ratio rather than a wrong one
    lone = bench_export.summarize([{"peer": "kzoo_savedmodel", "batch": 32, "median_ms": 1.0}], "kzoo_onnx_fp32")
    assert "vs_kzoo_onnx_fp32" not in lone[0]


@pytest.mark.backend("tensorflow", reason="pure Python on result rows, no backend involved: the TensorFlow run "
                                         "covers it")
def test_tokenizer_share_and_token_equality_from_rows():
    summary = bench_export.summarize([
        {"peer": "kzoo_savedmodel_classify", "batch": 1, "median_ms": 20.0},
        {"peer": "kzoo_savedmodel_classify_tokenizer", "batch": 1, "median_ms": 5.0},
        {"peer": "kzoo_savedmodel_classify", "batch": 8, "median_ms": 40.0},
    ], "kzoo_onnx_fp32")
    assert bench_export.tokenizer_shares(summary) == {1: 0.25}
    same = [{"peer": "kzoo_savedmodel_generate", "batch": 1, "tokens": [[3, 4]], "round": 0},
            {"peer": "kzoo_onnx_generate", "batch": 1, "tokens": [[3, 4]], "round": 0},
            {"peer": "kzoo_savedmodel_generate", "batch": 2, "tokens": [[3, 4], [5, 6]], "round": 0},
            {"peer": "kzoo_onnx_generate", "batch": 2, "tokens": [[3, 4], [5, 7]], "round": 0},
            {"peer": "kzoo_onnx_generate", "batch": 4, "tokens": [[1]], "round": 0},
            {"peer": "kzoo_onnx_generate", "batch": 4, "tokens": [[1]], "round": 1}]
    # batch 4: only one peer ran, so nothing was compared
    assert bench_export.same_tokens(same) == {1: True, 2: False, 4: None}


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the tool exports SavedModels and ONNX graphs, which need the TensorFlow "
                                         "backend; its peers run in their own processes")
def test_quick_run_times_every_peer_and_the_ceiling(tmp_path):
    # The encoder peers of the first version: the classifier, int8 SavedModel and GPT-2 peers would add about a
    # minute of exports and processes to CI; after changing them run `tools/bench_export.py --quick` and
    # `--quick --model gpt2` by hand.
    peers = ["kzoo_savedmodel", "kzoo_onnx_fp32", "kzoo_onnx_int8", "keras_hub_savedmodel", "keras_hub_onnx",
             "hf_torch"]
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--peers", *peers, "--output", str(output)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=ROOT,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    timed = {(row["peer"], row["batch"]) for row in report["results"] if "median_ms" in row}
    assert timed == {(peer, batch) for peer in peers for batch in (1, 8)}
    assert all(row["median_ms"] > 0 and row["gflops_per_s"] > 0 for row in report["results"])
    assert {(entry["peer"], entry["batch"]) for entry in report["summary"]} == timed
    assert all(entry["vs_kzoo_onnx_fp32"] > 0 and entry["requests_per_s"] > 0 for entry in report["summary"])
    assert report["load_average_at_start"] is not None and report["load_average_at_end"] is not None
    assert {(row["ceiling"], row["batch"]) for row in report["matmul_ceiling"]} == {
        (precision, batch) for precision in ("fp32", "int8") for batch in (1, 8)}
    assert "GFLOP/s (% of matmul ceiling)" in done.stdout
