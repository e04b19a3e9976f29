"""Under a backend the training loop does not run on, `kzoo train` and the Trainer stop at once with one line."""

import pytest

from kzoo.recipes.index import load_recipe
from kzoo.train import ConfigError, TrainConfig, Trainer

pytestmark = pytest.mark.backend("jax")


def test_kzoo_train_under_jax_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        load_recipe("gpt_pretrain").main(["--model.preset=gpt_test", f"--train.output_dir={output}"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert "training runs on the TensorFlow backend only for now, and KERAS_BACKEND is 'jax'" in error
    assert not output.exists()


def test_the_trainer_refuses_before_touching_the_model():
    with pytest.raises(ConfigError, match="rerun with KERAS_BACKEND=tensorflow"):
        Trainer(model=None, config=TrainConfig(), strategy=None, train_dataset=None)
