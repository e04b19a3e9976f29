"""tools/bench_lm_loss.py: the fused loss needs less XLA scratch memory than logits + cross-entropy, same loss."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.backend("tensorflow", reason="the tool starts its own JAX process whatever the parent's backend")
def test_quick_run_reports_memory_and_equal_losses(tmp_path):
    output = tmp_path / "loss.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "bench_lm_loss.py"), "--quick", "--dtype", "float32",
         "--output", str(output)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "XLA temp MB" in done.stdout
    rows = {row["peer"]: row for row in json.loads(output.read_text())["rows"]}
    assert set(rows) == {"logits", "fused-64"}
    # 256 tokens x 1024 columns: the logits path keeps (n, R) float32 arrays the fused one never forms.
    assert rows["fused-64"]["xla_temp_bytes"] < rows["logits"]["xla_temp_bytes"] / 2
    assert rows["fused-64"]["loss"] == pytest.approx(rows["logits"]["loss"], rel=1e-5)
    assert rows["logits"]["time_s"] > 0 and rows["fused-64"]["time_s"] > 0
