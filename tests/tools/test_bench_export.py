"""tools/bench_export.py: its FLOP count against the model's own matmul weights, and a quick run with every peer."""

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


@pytest.mark.slow
@pytest.mark.backend("tensorflow")
def test_quick_run_times_every_peer_and_the_ceiling(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--output", str(output)], capture_output=True,
                          text=True, timeout=900, check=False, cwd=ROOT,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    timed = {(row["peer"], row["batch"]) for row in report["results"] if "median_ms" in row}
    assert timed == {(peer, batch) for peer in bench_export.PEERS for batch in (1, 8)}
    assert all(row["median_ms"] > 0 and row["gflops_per_s"] > 0 for row in report["results"])
    assert {(row["ceiling"], row["batch"]) for row in report["matmul_ceiling"]} == {
        (precision, batch) for precision in ("fp32", "int8") for batch in (1, 8)}
    assert "GFLOP/s (% of matmul ceiling)" in done.stdout
