"""LoRA and QLoRA-style fine-tuning through a recipe (`--model.lora_rank`, `--model.quantize`), on gpt_finetune.

The base is a random tiny GPT (`gpt_test`, a ~300-token byte-level BPE) saved as a kzoo `.keras` file with its
tokenizer folder beside it, as a finished gpt_pretrain run leaves it. A run trains for 6 steps with checkpoints at 3
and 6 on the recipe's offline default corpus. An interruption after step 3 is reproduced exactly by deleting the
step-6 checkpoint and rerunning the same command: the run resumes from step 3, and its step-6 checkpoint (model and
optimizer) must equal the uninterrupted run's bit for bit.
"""

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest

from kzoo import cli, models, saving
from kzoo.models import lora
from kzoo.recipes.adapters import quantize_backbone
from recipes import gpt_finetune
from tests.harness import to_numpy
from tests.recipes.test_seq2seq_and_finetune_recipes import _byte_level_bpe

STEPS = ["--train.steps=6", "--train.checkpoint_every=3", "--train.batch_size=8", "--train.warmup_steps=1",
         "--train.learning_rate=2e-2", "--train.eval_steps=2", "--train.verbose=0", "--data.sequence_length=16",
         "--data.prompt_words=3", "--data.sample_tokens=4"]
LORA = ["--model.lora_rank=4"]  # query and value, alpha = rank
IDS = np.array([[5, 6, 7, 8, 9, 10, 11, 12], [40, 41, 42, 43, 44, 45, 46, 47]])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`model.keras` of a random gpt_test GPTCausalLM with `tokenizer/` (vocab.json, merges.txt) beside it."""
    folder = tmp_path_factory.mktemp("base")
    size, _ = _byte_level_bpe(folder / "tokenizer")
    keras.utils.set_random_seed(0)
    models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=size, dropout=0.0)).save(folder / "model.keras")
    return folder / "model.keras"


def _train(output_dir, base_path, *arguments):
    gpt_finetune.main([*STEPS, f"--model.checkpoint={base_path}", f"--train.output_dir={output_dir}", *arguments])
    with open(os.path.join(output_dir, "result.json"), encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base):
    """A finished rank-4 LoRA run (the tests below only read it or copy it)."""
    output = tmp_path_factory.mktemp("lora") / "run"
    return output, _train(output, base, *LORA)


def _checkpoint(output_dir, step):
    """`{group: {path: array}}` of a run's checkpoint at `step` (the trainer's state.npz and meta.json)."""
    folder = os.path.join(output_dir, "checkpoints", f"step-{step:09d}")
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as file:
        listing = json.load(file)["variables"]
    with np.load(os.path.join(folder, "state.npz")) as state:
        return {group: {path: state[f"{group}/{index}"] for index, (path, _) in enumerate(paths)}
                for group, paths in listing.items()}


def _logits(model):
    return to_numpy(model({"token_ids": IDS, "padding_mask": np.ones_like(IDS, bool)}))


def _assert_resumes_bit_identically(output_dir, base_path, tmp_path, *arguments):
    """Copies the finished run, deletes its step-6 checkpoint (a run killed after step 3), reruns the command and
    compares the new step-6 checkpoint with the uninterrupted one, variable by variable, exactly."""
    straight = _checkpoint(output_dir, 6)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(output_dir, interrupted)
    shutil.rmtree(interrupted / "checkpoints" / f"step-{6:09d}")
    result = _train(interrupted, base_path, *arguments)
    assert (result["resumed_from"], result["steps_this_run"]) == (3, 3)
    resumed = _checkpoint(interrupted, 6)
    assert list(resumed["model"]) == list(straight["model"])  # the same variables in the same order
    for group, values in straight.items():  # (the optimizer's name differs between processes: by position)
        assert len(resumed[group]) == len(values)
        for (path, array), again in zip(values.items(), resumed[group].values(), strict=True):
            np.testing.assert_array_equal(again, array, err_msg=f"{group} {path}")


def test_a_lora_run_learns_through_the_adapters_alone_then_evaluates_quantized_and_refuses_other_options(
        lora_run, base, capsys):
    """One finished run serves three checks (a module fixture would be trained once per xdist worker)."""
    _learns_through_the_adapters_alone(*lora_run, base)
    _eval_quantize_int8_prints_the_quantized_metrics(*lora_run, capsys)
    _a_resume_with_other_adapter_options_and_a_bad_eval_mode_are_refused(lora_run[0], base, capsys)


def _learns_through_the_adapters_alone(output, result, base):
    evaluation = result["eval"]
    assert evaluation["loss"] < evaluation["base_loss"]  # held out, on the same batches as the base's loss
    # gpt_test: 2 blocks, hidden 32, 2 heads of 16; query and value adapters A (32, 2, 4) and B (4, 16).
    adapters = 2 * 2 * (32 * 2 * 4 + 4 * 16)
    assert result["lora"] == {"rank": 4, "alpha": 4.0, "targets": ["query", "value"], "quantize": None,
                              "adapter_parameters": adapters, "trainable_parameters": adapters,
                              "parameters": result["lora"]["parameters"]}
    assert result["adapters"] == os.path.join(str(output), "adapters.npz")

    # Every weight but the adapters is the starting checkpoint's, bit for bit; the adapters moved.
    final = _checkpoint(output, 6)["model"]
    start = {variable.path: to_numpy(variable) for variable in saving.load_model(str(base), compile=False).weights}
    frozen = {path: array for path, array in final.items() if "lora_kernel" not in path}
    assert sorted(frozen) == sorted(start)
    for path, array in start.items():
        np.testing.assert_array_equal(frozen[path], array, err_msg=path)
    assert min(np.abs(array).max() for path, array in final.items() if path.endswith("lora_kernel_b")) > 0

    # The base plus adapters.npz computes what model.keras (the merged model) computes.
    merged = saving.load_model(str(output / "model.keras"), compile=False)
    assert lora.lora_settings(merged) is None
    adapted = saving.load_model(str(base), compile=False)
    lora.load_adapters(adapted, output / "adapters.npz")
    np.testing.assert_allclose(_logits(adapted), _logits(merged), atol=1e-5)
    assert not np.allclose(_logits(adapted), _logits(saving.load_model(str(base), compile=False)), atol=1e-5)


@pytest.mark.slow
def test_qlora_int8_trains_over_a_frozen_int8_base_and_resumes_bit_identically(base, tmp_path, capsys):
    output = tmp_path / "qlora"
    result = _train(output, base, *LORA, "--model.quantize=int8")
    assert result["eval"]["loss"] < result["eval"]["base_loss"]  # the float base's held-out loss
    assert result["lora"]["quantize"] == "int8"

    # The int8 kernels and their scales, and every other base weight, are the quantized base's, bit for bit.
    quantized = saving.load_model(str(base), compile=False)
    quantize_backbone(quantized, "int8")
    start = {variable.path: to_numpy(variable) for variable in quantized.weights}
    final = _checkpoint(output, 6)["model"]
    int8 = [path for path, array in final.items() if array.dtype == np.int8]
    assert len(int8) == 2 * 6  # per block: query, key, value, output, up, down
    for path, array in start.items():
        np.testing.assert_array_equal(final[path], array, err_msg=path)

    _assert_resumes_bit_identically(output, base, tmp_path, *LORA, "--model.quantize=int8")

    # model.keras holds the int8 base with the adapters merged (Keras requantizes the merged kernels).
    reloaded = saving.load_model(str(output / "model.keras"), compile=False)
    assert {layer.quantization_mode for layer in reloaded._flatten_layers() if layer.name == "query"} == {"int8"}
    lora.load_adapters(quantized, output / "adapters.npz")
    expected = _logits(quantized)
    np.testing.assert_allclose(_logits(reloaded), expected, atol=0.02 * np.abs(expected).max())

    # Plain `kzoo eval` rebuilds the quantized model (as the resumed run above did); --quantize on top is refused.
    capsys.readouterr()
    assert cli.main(["eval", str(output), "--quantize", "int8"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("kzoo eval: ") and len(message.splitlines()) == 1
    assert "model.quantize=int8" in message and "drop --quantize" in message


def _eval_quantize_int8_prints_the_quantized_metrics(output, result, capsys):
    capsys.readouterr()
    assert cli.main(["eval", str(output), "--quantize", "int8", "--train.eval_steps=2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"kzoo eval: step 6 of {output} with int8 weights: loss ")
    quantized_loss = float(line.split(": loss ")[1].split(",")[0])
    # The same held-out batches as the run's last evaluation: int8 weights move the loss a little, not much.
    assert quantized_loss != pytest.approx(result["eval"]["loss"], abs=1e-6)
    assert quantized_loss == pytest.approx(result["eval"]["loss"], abs=0.05)


@pytest.mark.parametrize("argv, message", [
    (["--model.lora_rank=-1"], "model.lora_rank must be an integer >= 0"),
    (["--model.lora_rank=4", "--model.lora_alpha=-2"], "model.lora_alpha must be a number >= 0"),
    (["--model.lora_rank=4", "--model.lora_targets=q_proj"], "model.lora_targets='q_proj': name some of query,"),
    (["--model.lora_rank=4", "--model.quantize=int3"], "model.quantize must be one of int8, int4 (or empty"),
    (["--model.lora_rank=4", "--model.quantize=float8"], "float8 layers do not train adapters"),
    (["--model.quantize=int8"], "model.quantize=int8 needs --model.lora_rank > 0"),
])
def test_bad_adapter_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        gpt_finetune.main([*STEPS, f"--train.output_dir={tmp_path / 'run'}", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert not os.path.exists(tmp_path / "run" / "data")  # refused before the corpus was written


def _a_resume_with_other_adapter_options_and_a_bad_eval_mode_are_refused(output, base, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _train(output, base, "--model.lora_rank=8")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "model.lora_rank" in error and "4" in error and "8" in error, error
    assert cli.main(["eval", str(output), "--quantize", "int3"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "kzoo eval: --quantize must be one of int8, int4, float8, got 'int3'."
    assert cli.main(["eval", str(output), "--quantize", "float8"]) == 2  # Keras' float8 layers run no adapters
    error = capsys.readouterr().err.strip()
    assert error.startswith("kzoo eval: --quantize float8: ") and "use int8 or int4" in error, error
    assert math.isfinite(json.loads((output / "result.json").read_text())["eval"]["loss"])  # the run is untouched
