"""The recipe runner end to end on gpt_pretrain: outputs, resume by rerunning, `kzoo eval`, user errors."""

import json
import os
import subprocess
import sys

import pytest

from kzoo import cli
from kzoo.recipes.index import load_recipe, recipe_names


TINY = ["--model.preset=gpt_test", "--data.vocabulary_size=256", "--data.sequence_length=16",
        "--train.batch_size=4", "--train.eval_steps=2", "--train.verbose=0", "--train.log_every=1"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.backend("jax", reason="it trains under JAX, then exports in a TensorFlow process; the TensorFlow "
                            "run trains and exports in the other recipe tests")
@pytest.mark.slow
def test_a_model_trained_under_jax_exports_under_tensorflow_with_verified_parity(tmp_path):
    output = str(tmp_path / "run")
    assert cli.main(["train", "gpt_pretrain", *TINY, "--train.steps=1", f"--train.output_dir={output}"]) == 0
    export = subprocess.run(
        [sys.executable, "-m", "kzoo.cli", "export", output, "--output", str(tmp_path / "served"), "--verify",
         "--max-new-tokens=2", "--no-warmup"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": ROOT})
    assert export.returncode == 0, export.stderr[-3000:]
    assert "serve: tensorflow_model_server" in export.stdout


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

    # `kzoo generate RUN_DIR` reads the run's model.keras and tokenizer/ (kzoo.recipes.load_run).
    assert cli.main(["generate", output, "--prompt", "the", "--max-new-tokens", "2", "--no-xla", "--json"]) == 0
    assert [row["prompt"] for row in json.loads(capsys.readouterr().out)] == ["the"]


def test_a_renamed_key_is_said_as_one_kzoo_warning_line(tmp_path, capsys):
    recipe = load_recipe("seq2seq_translate")
    with pytest.raises(SystemExit):  # stopped by the invalid step count, after the keys were read
        recipe.main(["--data.source_length=16", "--train.steps=0", f"--train.output_dir={tmp_path}"])
    assert capsys.readouterr().err.splitlines()[0] == (
        "kzoo train seq2seq_translate: warning: config key 'data.source_length' is now "
        "'data.encoder_sequence_length'; the old name will stop working in the next release.")
    # `kzoo eval` of a run whose config.yaml was written before the rename reads it, saying so the same way.
    (tmp_path / "config.yaml").write_text("recipe: seq2seq_translate\ndata:\n  source_length: 16\n")
    with pytest.raises(SystemExit) as stopped:  # no checkpoint to evaluate in this folder
        cli.main(["eval", str(tmp_path)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.splitlines()
    assert error[0].startswith("kzoo eval: warning: config key 'data.source_length' is now") and len(error) == 2


@pytest.mark.parametrize("argv, message", [
    (["--train.stepz=3"], "unknown config key 'train.stepz'"),
    (["--train.steps=many"], "train.steps expects int"),
    (["--model.preset=gpt_gigantic"], "gpt_gigantic"),
    (["--data.train_files=/nonexistent/corpus"], "/nonexistent/corpus"),
    (["--train.devices=/gpu:7"], "train.devices: there is no device '/gpu:7' on this machine"),
    (["--train.learning_rate=inf"], "train.learning_rate must be a finite number"),
    (["--train.clip_norm=nan"], "train.clip_norm must be a finite number"),
    (["--model.dropout=nan"], "model.dropout must be a finite number"),
    (["--train.resume=must"], "--train.resume=must, but there is no checkpoint in"),
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


def test_an_output_folder_that_cannot_be_written_exits_2_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        load_recipe("gpt_pretrain").main([*TINY, "--train.steps=1", f"--train.output_dir={tmp_path / 'file' / 'run'}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "cannot write to the output folder" in error and "file/run" in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def _exit_code_and_error(capsys, recipe, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(argv)
    error = capsys.readouterr().err
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1, error
    return exit_info.value.code, error


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="the run folder's checks are the runner's under every backend; the JAX "
                     "run resumes in test_kill_test.py and test_trainer.py")
def test_a_run_folder_reused_with_other_data_is_refused_and_nothing_is_destroyed(tmp_path, capsys):
    import shutil

    from kzoo.recipes import default_corpus

    data_dir = str(tmp_path / "documents")
    shutil.copytree(default_corpus("lm", str(tmp_path / "source"))["documents"], data_dir)
    output = tmp_path / "run"
    base = [*TINY, f"--train.output_dir={output}", f"--data.train_files={data_dir}"]
    recipe = load_recipe("gpt_pretrain")
    recipe.main([*base, "--train.steps=1"])
    config_text, vocabularies = (output / "config.yaml").read_text(), sorted(os.listdir(output / "vocab"))

    # Other data files: refused before anything is read, built or written.
    other = [*base, "--train.steps=2", f"--data.train_files={tmp_path / 'source' / 'data' / 'lm'}"]
    code, error = _exit_code_and_error(capsys, recipe, other)
    assert code == 2 and f"data.train_files was '{data_dir}', now" in error and "--train.output_dir" in error
    assert (output / "config.yaml").read_text() == config_text

    # The same files with other contents: a new vocabulary, in its own folder; refused before config.yaml.
    documents = sorted(os.listdir(data_dir))
    originals = {name: (tmp_path / "documents" / name).read_text() for name in documents}
    for name in documents:
        (tmp_path / "documents" / name).write_text(originals[name].upper().replace("E", "Q"))
    code, error = _exit_code_and_error(capsys, recipe, [*base, "--train.steps=2"])
    assert code == 2 and "files.spiece.model was" in error
    assert (output / "config.yaml").read_text() == config_text
    assert set(vocabularies) < set(os.listdir(output / "vocab"))  # the old vocabulary is still there

    # The original data and a longer run: resumes.
    for name in documents:
        (tmp_path / "documents" / name).write_text(originals[name])
    recipe.main([*base, "--train.steps=2", "--train.log_every=5"])
    with open(output / "result.json") as file:
        assert json.load(file)["resumed_from"] == 1

    # Every checkpoint damaged: one line, exit 2, nothing deleted.
    steps = sorted(os.listdir(output / "checkpoints"))
    for name in steps:
        with open(output / "checkpoints" / name / "state.npz", "r+b") as file:
            file.truncate(10)
    with pytest.warns(UserWarning):
        code, error = _exit_code_and_error(capsys, recipe, [*base, "--train.steps=3"])
    assert code == 2 and f"none of the {len(steps)} checkpoints" in error
    assert sorted(os.listdir(output / "checkpoints")) == steps


@pytest.mark.parametrize(("history", "expected"), [
    ({"first_loss": 5.6709, "last_loss": 5.6709, "loss_steps": [6, 6]}, "; train loss 5.6709 at step 6\n"),
    ({"first_loss": 6.25, "last_loss": 2.5, "loss_steps": [10, 40]},
     "; train loss 6.2500 (step 10) -> 2.5000 (step 40)\n"),
    ({"first_loss": None, "last_loss": None, "loss_steps": None}, "; no new steps\n"),
])
def test_the_run_summary_names_the_steps_its_losses_were_logged_at(history, expected, capsys):
    """One logged step (log_every >= the steps run) prints one loss, not 'A -> A' as if nothing was learned."""
    from kzoo.recipes import runner

    result = {"steps": 6, "steps_this_run": 6, "wall_seconds": 1.0, "eval": {"loss": 5.0}, "checkpoint": "c",
              "model": "m", "tokenizer_dir": "t", "logdir": "l", **history}
    runner._report("gpt_finetune", result)
    assert expected in capsys.readouterr().out
