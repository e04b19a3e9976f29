"""tools/bench_generate.py: the quick mode runs end to end, and every peer's worker works.

The end-to-end run uses the cheapest peer (transformers: no TensorFlow import in the
subprocess); the kzoo and keras-hub workers run in this process on the tiny model.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "bench_generate.py")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.backend("tensorflow", reason="the benchmark measures the TensorFlow backend in its own processes"),
]


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_a_table_and_json(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--peers", "transformers", "--batch-sizes", "1", "2", "--new-tokens",
         "4", "--output", str(output)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tokens/s" in done.stdout and "transformers" in done.stdout
    report = json.loads(output.read_text())
    assert report["model"] == "tiny" and [row["batch"] for row in report["results"]] == [1, 2]
    for row in report["results"]:
        assert row["tokens_per_s"] > 0 and row["new_tokens"] == 4


@pytest.mark.parametrize("peer", ["kzoo", "keras_hub"])
def test_keras_workers_generate_the_requested_tokens(peer):
    bench = _load_script()
    warm, timed = bench.WORKERS[peer](bench.TINY, 2, 5, 3)
    warm()
    out = timed()
    tokens = np.asarray(out if peer == "kzoo" else out["token_ids"])
    assert tokens.shape == ((2, 3) if peer == "kzoo" else (2, 8))
