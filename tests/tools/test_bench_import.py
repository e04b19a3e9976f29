"""tools/make_random_checkpoint.py writes checkpoints transformers' layout describes; tools/bench_import.py
measures one peer and compares peers."""

import math
import os
import sys

import ml_dtypes
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from kzoo.convert import read_hf_checkpoint  # noqa: E402
from tools import bench_import, make_random_checkpoint  # noqa: E402


@pytest.mark.backend("tensorflow", reason="file writing only: no Keras computation")
def test_preset_sizes_are_the_published_counts():
    counts = {preset: sum(math.prod(shape) for _, shape, _ in make_random_checkpoint.checkpoint_spec(preset)[1])
              for preset in ("tinyllama_1_1b", "gpt2_small")}
    assert counts == {"tinyllama_1_1b": 1_100_048_384, "gpt2_small": 124_439_808}
    config, tensors = make_random_checkpoint.checkpoint_spec("tinyllama_1_1b", num_layers=1)
    assert config["num_hidden_layers"] == 1 and len(tensors) == 1 + 9 + 2


@pytest.mark.backend("tensorflow", reason="file writing only: no Keras computation")
def test_sharded_and_bfloat16_checkpoints_hold_the_same_values(tmp_path):
    one = make_random_checkpoint.write_checkpoint(tmp_path / "one", "llama_tiny", seed=3)
    sharded = make_random_checkpoint.write_checkpoint(tmp_path / "sharded", "llama_tiny", seed=3,
                                                      max_shard_bytes=12_000)
    make_random_checkpoint.write_checkpoint(tmp_path / "bf16", "llama_tiny", "bfloat16", seed=3)
    make_random_checkpoint.write_checkpoint(tmp_path / "other", "llama_tiny", seed=4)
    assert one["files"] == ["model.safetensors"] and len(sharded["files"]) > 2
    assert one["parameters"] == 13_560 and one["fp32_bytes"] == 4 * 13_560
    weights = {name: read_hf_checkpoint(tmp_path / name).weights for name in ("one", "sharded", "bf16", "other")}
    _, spec = make_random_checkpoint.checkpoint_spec("llama_tiny")
    assert {name: weights["sharded"].shape(name) for name in weights["sharded"]} == {n: s for n, s, _ in spec}
    assert weights["bf16"].stored_dtype("lm_head.weight") == "BF16"
    for name in weights["one"]:
        value = weights["one"][name]
        np.testing.assert_array_equal(weights["sharded"][name], value)
        np.testing.assert_array_equal(weights["bf16"][name], value.astype(ml_dtypes.bfloat16).astype(np.float32))
        assert not np.array_equal(weights["other"][name], value)
    kernel, scale = weights["one"]["model.layers.1.mlp.up_proj.weight"], weights["one"]["model.norm.weight"]
    assert abs(kernel.std() - 0.02) < 0.002 and abs(scale.mean() - 1.0) < 0.1  # (37, 24) and (24,) values


def test_kzoo_load_measures_build_reads_and_memory(tmp_path):
    make_random_checkpoint.write_checkpoint(tmp_path, "llama_tiny", max_shard_bytes=20_000)
    model, result = bench_import.kzoo_load(str(tmp_path))
    assert model.count_params() == result["parameters"] == 13_560
    assert result["tensors_read"] >= 21  # every stored tensor; a converter may peek at some first
    assert 0 < result["build_s"] < result["load_s"] and 0 < result["read_s"] < result["load_s"]
    # The baseline is VmRSS and the peaks are getrusage's max RSS: two kernel counters that can differ by a fraction
    # of a MB when the process starts at its high-water mark (0.26 MB seen in a long-lived pytest worker).
    assert 0 < result["baseline_gb"] <= result["build_peak_gb"] + 0.01
    assert result["build_peak_gb"] <= result["load_peak_gb"]


@pytest.mark.backend("tensorflow", reason="arithmetic on result rows only")
def test_compare_and_table():
    rows = [
        {"peer": "kzoo-jax", "load_s": 6.0, "load_peak_gb": 5.0, "baseline_gb": 1.0, "peak_gb": 5.5,
         "ms_per_token": 30.0, "tokens": [1, 2, 3], "build_s": 4.0},
        {"peer": "kzoo-tensorflow", "error": "exit 1: MemoryError"},
        {"peer": "transformers", "load_s": 2.0, "load_peak_gb": 4.5, "baseline_gb": 0.5, "peak_gb": 4.6,
         "ms_per_token": 60.0, "tokens": [1, 2, 4]},
    ]
    bench_import.compare(rows, fp32_bytes=4e9)
    kzoo = rows[0]
    assert kzoo["load_peak_x_fp32"] == pytest.approx(1.25) and kzoo["load_peak_over_baseline_x_fp32"] == 1.0
    assert kzoo["load_s_vs_reference"] == 3.0 and kzoo["ms_per_token_vs_reference"] == 0.5
    assert kzoo["tokens_equal_reference"] is False and rows[2]["tokens_equal_reference"] is True
    lines = bench_import.markdown_table(rows).splitlines()
    assert len(lines) == 5 and lines[0].startswith("| peer | load s |")
    assert lines[2].startswith("| kzoo-jax | 6.0 | 4.0 | - | 5.00 | 1.25 | 1.00 |") and "| False |" in lines[2]
    assert lines[3] == "| kzoo-tensorflow | error: exit 1: MemoryError |"
