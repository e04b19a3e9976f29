"""tools/bench_quantization.py: its alternation and statistics, its tables, the byte-level prompt, the skipped
accuracy section, and a quick latency run over every variant (Keras, SavedModel, ONNX Runtime; fp32 and int8)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "bench_quantization.py")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import bench_quantization as bench  # noqa: E402


def test_alternate_rotates_the_order_and_times_every_call():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = bench.alternate(calls, rounds=4)
    assert order == list("abc" "bca" "cab" "abc")
    assert all(len(samples) == 4 and min(samples) >= 0 for samples in times.values())


def test_spread_gives_the_median_and_inclusive_quartiles():
    assert bench.spread([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0}
    assert bench.spread([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0}


def _columns(table):
    return {line.count("|") for line in table.splitlines()}


def test_tables_keep_their_columns_and_show_failures_in_the_row():
    fp32 = {"variant": "keras_fp32", "times_ms": [10.0, 12.0], "median_ms": 11.0, "q1_ms": 10.5, "q3_ms": 11.5}
    int8 = {"variant": "keras_int8", "times_ms": [5.0, 9.0], "median_ms": 7.0, "q1_ms": 6.0, "q3_ms": 8.0}
    failed = {"variant": "savedmodel_int8", "error": "ExportError: no"}
    table = bench.latency_table([fp32, int8, failed], "bert")
    assert len(_columns(table)) == 1
    assert "0.62 (0.56-0.69)" in table  # per-round ratios 0.5 and 0.75
    assert "ExportError: no" in table
    sizes = [{"preset": "bert_test", "mode": "int4", "keras_bytes": None, "variable_bytes": 2**20,
              "savedmodel_bytes": None, "onnx_bytes": None, "error": "save: ValueError: x"}]
    table = bench.size_table(sizes)
    assert len(_columns(table)) == 1 and "save: ValueError: x" in table and "| 1.0 |" in table


def test_byte_level_prompt_is_one_token_per_character():
    tokenizer = bench.byte_level_tokenizer()
    ids = tokenizer.tokenize([bench.prompt_text(128)])
    assert ids.shape[0] == 1 and int(ids.row_lengths()[0]) == 128
    assert tokenizer.vocabulary_size == 258


def test_a_missing_classify_run_is_skipped_with_a_line(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, SCRIPT, "--sections", "accuracy", "--classify-run", str(tmp_path / "no"),
                           "--output", str(output)], capture_output=True, text=True, timeout=120, check=False,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accuracy: skipped: no bert_classify run at" in done.stdout
    assert "no run at" in json.loads(output.read_text())["accuracy"]["skipped"]


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the tool times TensorFlow exports in its own processes; once is enough")
def test_quick_latency_run_times_every_variant(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--sections", "latency", "--models", "bert",
                           "--output", str(output)], capture_output=True, text=True, timeout=900, check=False,
                          cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    rows = {row["variant"]: row for row in report["latency"]["bert"]}
    assert set(rows) == set(bench.LATENCY_VARIANTS)
    for variant, row in rows.items():
        assert "error" not in row, (variant, row["error"])
        assert len(row["times_ms"]) == 3 and 0 < row["q1_ms"] <= row["median_ms"] <= row["q3_ms"]
    artifacts = report["artifacts"]["bert"]
    # int8 kernels hold a quarter of the fp32 bytes (plus scales); embeddings and norms stay float32.
    assert artifacts["weights_int8"]["bytes"] < artifacts["weights_fp32"]["bytes"]
    assert artifacts["weights_int4"]["bytes"] < artifacts["weights_int8"]["bytes"]
    assert "int8/fp32 (same runtime)" in done.stdout and "onnx_int8" in done.stdout
