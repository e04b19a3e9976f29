"""tools/bench_train.py: its FLOP accounting, the GPU peak table, the no-GPU failure, and a quick CPU run."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "bench_train.py")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.bench import peaks, specs  # noqa: E402

ROW_FIELDS = {
    "peer", "model", "config", "backend", "precision", "step_s", "step_times_s", "first_step_s", "tokens_per_step",
    "tokens_per_s", "flops_per_token", "achieved_flops_per_s", "peak_kind", "peak_flops_per_s", "mfu",
    "parameters", "first_loss", "last_loss", "versions",
}


def _run_quick(tmp_path, *extra):
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--peers", "kzoo", "keras_hub", "--output", str(output), *extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tokens/s" in done.stdout and "MFU" in done.stdout
    return json.loads(output.read_text())


def _check_rows(report, models):
    assert report["device"] == "cpu" and report["keras_backend"] == "tensorflow"
    assert report["formula"] == specs.FORMULA
    rows = report["results"]
    assert {(row["peer"], row["model"]) for row in rows} == {(p, m) for p in ("kzoo", "keras_hub") for m in models}
    for row in rows:
        assert ROW_FIELDS <= set(row), sorted(ROW_FIELDS - set(row))
        assert len(row["step_times_s"]) == report["timed_steps"]
        assert row["step_s"] > 0 and row["tokens_per_s"] > 0 and row["achieved_flops_per_s"] > 0
        assert row["tokens_per_s"] == pytest.approx(row["tokens_per_step"] / row["step_s"])
        assert row["flops_per_token"] == report["models"][row["model"]]["flops_per_token"]
        assert row["peak_kind"] == "measured ceiling" and row["peak_flops_per_s"] > 0 and 0 < row["mfu"]
        assert math.isfinite(row["first_loss"]) and math.isfinite(row["last_loss"])
        assert row["backend"] == "tensorflow" and row["precision"] == "float32"


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the tool runs its own TensorFlow subprocesses")
def test_quick_cpu_run_writes_the_table_and_json(tmp_path):
    report = _run_quick(tmp_path, "--models", "gpt")
    _check_rows(report, ["gpt"])
    kzoo = next(row for row in report["results"] if row["peer"] == "kzoo")
    assert "Trainer" in kzoo["step"]  # the kzoo row times kzoo.train.Trainer's own step


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the tool runs its own TensorFlow subprocesses")
def test_quick_cpu_run_bert_rows(tmp_path):
    _check_rows(_run_quick(tmp_path, "--models", "bert"), ["bert"])


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the workers run under JAX whatever the parent's backend")
def test_quick_jax_run_without_tensorflow_uses_the_gpu_mode_model(tmp_path):
    """The GPU mode's kzoo configuration on CPU: JAX, no TensorFlow importable, the token
    table padded (--vocabulary-multiple) for kzoo and the nanoGPT reference, the fused loss."""
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--backend", "jax", "--no-tensorflow", "--models", "gpt",
         "--peers", "kzoo", "nanogpt", "--no-compile", "--vocabulary-multiple", "96", "--fused-loss",
         "--output", str(output)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(output.read_text())
    assert report["vocabulary_multiple"] == 96
    rows = {row["peer"]: row for row in report["results"]}
    assert rows["kzoo"]["vocabulary_rows"] == rows["nanogpt"]["vocabulary_rows"] == 192  # 128 rounded up to 96s
    # On a CPU the automatic choice is the explicit form (fused kernels exist on GPUs/TPUs only).
    assert rows["kzoo"]["attention"] == "explicit softmax(QK^T)V"
    assert rows["kzoo"]["tensorflow_imported"] is False
    assert rows["kzoo"]["fused_loss"] is True and rows["kzoo"]["xla_temp_bytes"] > 0
    assert "XLA MB" in done.stdout
    assert all(math.isfinite(row["last_loss"]) for row in rows.values())


def test_flop_counts_reproduce_the_published_sizes():
    gpt2 = specs.SIZE_SETS["gpu"]["gpt"]
    counts = specs.parameter_counts(gpt2)
    # GPT-2 small has 124,439,808 parameters; N leaves out only the 1024 x 768 position table
    # (nanoGPT's get_num_params() = 123.65M).
    assert counts["N"] == 124_439_808 - 1024 * 768
    assert specs.flops_per_token(gpt2) == 6 * counts["N"] + 12 * 12 * 12 * 64 * 1024
    bert = specs.SIZE_SETS["gpu"]["bert"]
    counts = specs.parameter_counts(bert)
    assert counts["non_embedding"] == 85_054_464 + 2 * 768  # 12 encoder blocks + embedding norm
    assert bert.mask_predictions == 20 and counts["mlm_fraction"] == 20 / 128


@pytest.mark.parametrize("size_set", ["quick", "cpu"])
def test_parameter_counts_match_the_kzoo_models(size_set):
    from kzoo import models

    gpt = specs.SIZE_SETS[size_set]["gpt"]
    backbone = models.GPTBackbone(gpt.vocabulary_size, gpt.num_layers, gpt.num_heads, gpt.hidden_dim,
                                  gpt.intermediate_dim, max_sequence_length=gpt.max_sequence_length)
    counts = specs.parameter_counts(gpt)
    assert backbone.count_params() == counts["N"] + gpt.max_sequence_length * gpt.hidden_dim  # + position table
    bert = specs.SIZE_SETS[size_set]["bert"]
    backbone = models.BertBackbone(bert.vocabulary_size, bert.num_layers, bert.num_heads, bert.hidden_dim,
                                   bert.intermediate_dim, max_sequence_length=bert.max_sequence_length)
    counts = specs.parameter_counts(bert)
    d, v = bert.hidden_dim, bert.vocabulary_size
    lookups = v * d + bert.max_sequence_length * d + 2 * d  # token, position and segment tables
    assert backbone.count_params() == counts["non_embedding"] + lookups + d * d + d  # + pooler
    pretrainer = models.BertPretrainer(backbone)
    # The head tracks the token table it projects with, so its count includes V * d, as N's head term does.
    assert pretrainer.masked_lm_head.count_params() == counts["mlm_head"]


def test_gpu_peak_table_matches_device_names():
    assert peaks.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == (989.5, "H100")
    assert peaks.bf16_peak_tflops("NVIDIA H100 PCIe")[0] == 756.5
    assert peaks.bf16_peak_tflops("NVIDIA H100 NVL")[0] == 835.5
    assert peaks.bf16_peak_tflops("NVIDIA H200")[0] == 989.5
    assert peaks.bf16_peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert peaks.bf16_peak_tflops("Tesla T4") == (None, None)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None,
                    reason="nvidia-smi is present, so --device gpu may really run here; this test checks the message "
                           "on a machine without a GPU")
def test_gpu_mode_fails_clearly_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "--device", "gpu", "--output", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 2
    assert "--device gpu needs an NVIDIA GPU" in done.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the script starts its own processes for both peers")
def test_alternated_ab_quick_run_reports_a_ratio_per_model(tmp_path):
    output = tmp_path / "ab.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "bench_train_ab.py"), "--quick", "--steps-per-call", "2",
         "--output", str(output)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(output.read_text())["rows"]
    assert [row["model"] for row in rows] == ["gpt", "bert"]
    for row in rows:
        assert len(row["times_s"]["kzoo"]) == len(row["times_s"]["keras_hub"]) == 3
        low, high = row["ratio_quartiles"]
        assert 0 < low <= row["ratio_keras_hub_to_kzoo"] <= high
    assert "keras-hub/kzoo" in done.stdout


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the script picks its backends itself, in its own processes")
def test_alternated_ab_under_jax_times_the_trainer_steps_and_reports_the_tensorflow_ratio(tmp_path):
    output = tmp_path / "ab.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "bench_train_ab.py"), "--backend", "jax", "--quick",
         "--models", "gpt", "--steps-per-call", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(output.read_text())["rows"]
    assert row["backend"] == "jax" and len(row["times_s"]["kzoo"]) == 3
    assert row["kzoo_tensorflow_to_jax"] == pytest.approx(row["kzoo_tensorflow_step_s"] / row["kzoo_step_s"])
    assert "kzoo TF/JAX" in done.stdout
