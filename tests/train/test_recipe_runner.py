"""The recipe runner end to end on gpt_pretrain: outputs, resume by rerunning, `kzoo eval`, user errors."""

import json
import os

import pytest

from kzoo import cli
from kzoo.train.recipes_index import load_recipe, recipe_names

pytestmark = pytest.mark.backend("tensorflow")  # recipes drive tf.distribute and tf.data

TINY = ["--model.preset=gpt_test", "--data.vocabulary_size=256", "--data.sequence_length=16",
        "--train.batch_size=4", "--train.eval_steps=2", "--train.verbose=0", "--train.log_every=1"]


@pytest.mark.slow
def test_train_resume_and_eval_through_the_command_line(tmp_path, capsys):
    output = str(tmp_path / "run")
    assert "gpt_pretrain" in recipe_names()
    assert cli.main(["train", "gpt_pretrain", *TINY, "--train.steps=2", f"--train.output_dir={output}"]) == 0
    for name in ("model.keras", "config.yaml", "config.json", "history.jsonl", "result.json",
                 "checkpoints/step-000000002/state.npz", "tokenizer/spiece.model", "logs/train", "logs/eval"):
        assert os.path.exists(os.path.join(output, name)), name
    printed = capsys.readouterr().out
    assert "TensorBoard: tensorboard --logdir" in printed and "checkpoint:" in printed

    assert cli.main(["train", "gpt_pretrain", *TINY, "--train.steps=3", f"--train.output_dir={output}"]) == 0
    with open(os.path.join(output, "result.json")) as file:
        result = json.load(file)
    assert (result["resumed_from"], result["steps"], result["steps_this_run"]) == (2, 3, 1)
    assert "perplexity" in result["eval"]

    capsys.readouterr()
    assert cli.main(["eval", output, "--train.eval_steps=1"]) == 0
    assert "kzoo eval: step 3 of" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--train.stepz=3"], "unknown config key 'train.stepz'"),
    (["--train.steps=many"], "train.steps expects int"),
    (["--model.preset=gpt_gigantic"], "gpt_gigantic"),
    (["--data.train_files=/nonexistent/corpus"], "/nonexistent/corpus"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    recipe = load_recipe("gpt_pretrain")
    with pytest.raises(SystemExit) as exit_info:
        recipe.main([*TINY, "--train.steps=1", f"--train.output_dir={tmp_path}", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_unknown_recipe_and_missing_run_directory(tmp_path, capsys):
    assert cli.main(["train", "no_such_recipe"]) == 2
    assert "unknown recipe 'no_such_recipe'" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "config.yaml not found" in capsys.readouterr().err
