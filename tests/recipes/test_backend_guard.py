"""Under a backend kzoo does not train on (numpy, torch), `kzoo train` and the Trainer stop at once with one line."""

import keras
import pytest

from kzoo.recipes.index import load_recipe
from kzoo.train import ConfigError, TrainConfig, Trainer


@pytest.fixture
def numpy_backend(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")


def test_kzoo_train_under_another_backend_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys,
                                                                                   numpy_backend):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        load_recipe("gpt_pretrain").main(["--model.preset=gpt_test", f"--train.output_dir={output}"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert "kzoo trains under the TensorFlow and JAX backends, and KERAS_BACKEND is 'numpy'" in error
    assert not output.exists()


def test_the_trainer_refuses_before_touching_the_model(numpy_backend):
    with pytest.raises(ConfigError, match="rerun with KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow"):
        Trainer(model=None, config=TrainConfig(), strategy=None, train_dataset=None)
