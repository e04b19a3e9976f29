"""The serving soak (`tools/soak_export.py`) at a reduced count: 1,000 mixed valid and invalid requests through an
exported classifier in one process, zero unexpected errors, flat memory; and the soak's own verdicts."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backend("tensorflow", reason="it serves a SavedModel export, which "
                                                                     "needs TensorFlow")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "soak_export.py")
KINDS = {
    "texts", "empty_strings", "over_long", "empty_batch", "wrong_rank", "wrong_dtype", "missing_input",
    "unexpected_input", "ids", "bad_ids", "mismatched_mask", "too_long", "ids_int64",
}


def _soak(*args):
    """Runs the soak tool in a fresh process (its RSS is the soak's alone)."""
    environment = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=ROOT, env=environment,
                          timeout=900)


def _tool():
    spec = importlib.util.spec_from_file_location("soak_export", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_thousand_mixed_requests_raise_only_expected_errors_and_memory_stays_flat(tmp_path):
    output = tmp_path / "soak.json"
    done = _soak("--requests", "1000", "--warmup", "200", "--export-dir", str(tmp_path / "export"),
                 "--output", str(output))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["unexpected_errors"] == 0 and report["unexpected_examples"] == [] and report["passed"]
    assert report["successes"] + report["expected_errors"] == report["requests"] == 1000
    assert set(report["by_kind"]) == KINDS  # every kind of request was sent
    assert report["successes"] > 500 and report["expected_errors"] > 150
    assert report["rss_growth_after_warmup_mb"] <= report["max_growth_mb"] == 50
    rss = report["rss_mb"]
    assert min(rss["before_load"], rss["before"], rss["after_warmup"], rss["end"]) > 0
    # The exit status follows the memory bound: an impossible bound fails the same soak.
    strict = _soak("--export", report["export"], "--requests", "50", "--warmup", "10", "--max-growth-mb=-1e9")
    assert strict.returncode == 1 and "FAILED" in strict.stdout, strict.stdout[-2000:] + strict.stderr[-2000:]


class _Signature:
    def __init__(self, behaviour):
        self.behaviour = behaviour

    def __call__(self, **inputs):
        return self.behaviour(inputs)


class _Loaded:
    def __init__(self, behaviour):
        self.signatures = {"classify": _Signature(behaviour)}


def test_send_counts_wrong_errors_and_wrong_successes_as_unexpected():
    import numpy as np
    import tensorflow as tf

    tool = _tool()
    text = {"text": tf.constant([b"a", b"b"])}

    def fails(error):
        def behaviour(inputs):
            raise error
        return behaviour

    def answers(probabilities):
        return lambda inputs: {"probabilities": tf.constant(probabilities, tf.float32)}

    good = answers(np.full((2, 3), 1 / 3))
    invalid = tf.errors.InvalidArgumentError
    cases = [
        ("ok", good, "success"),
        ("ok", answers(np.full((1, 3), 1 / 3)), "unexpected"),  # wrong batch size
        ("ok", answers(np.full((2, 3), np.nan)), "unexpected"),  # non-finite
        ("ok", fails(invalid(None, None, "boom")), "unexpected"),  # a valid request failed
        (invalid, fails(invalid(None, None, "text is an empty batch")), "expected_error"),
        (invalid, fails(ValueError("not the documented error")), "unexpected"),
        (invalid, fails(RuntimeError("crash")), "unexpected"),
        (invalid, good, "unexpected"),  # an invalid request succeeded
        (TypeError, fails(TypeError("missing a required argument: 'text'")), "expected_error"),
    ]
    for expected, behaviour, outcome in cases:
        request = tool.Request("case", "classify", text, expected)
        assert tool.send(_Loaded(behaviour), request, num_classes=3)[0] == outcome, (expected, outcome)
