"""The schedule, the optimizer's weight-decay exclusions and loss scaling, and checkpoint files."""

import json
import math
import os

import keras
import numpy as np
import pytest

from kzoo.train.checkpoint import CheckpointError, CheckpointManager
from kzoo.train.config import TrainConfig
from kzoo.train.optimization import WarmupDecay, build_optimizer


def _rates(schedule, steps):
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


def test_warmup_then_linear_and_cosine_decay():
    linear = WarmupDecay(1.0, total_steps=10, warmup_steps=4, decay="linear", end_ratio=0.0)
    expected = [0.25, 0.5, 0.75, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]
    np.testing.assert_allclose(_rates(linear, range(10)), expected, atol=1e-6)
    cosine = WarmupDecay(2.0, total_steps=12, warmup_steps=2, decay="cosine", end_ratio=0.1)
    expected = [2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s + 1 - 2) / 10))) for s in range(2, 12)]
    np.testing.assert_allclose(_rates(cosine, range(2, 12)), expected, atol=1e-6)
    assert _rates(WarmupDecay(3.0, 5, 0, "constant"), [0, 4]) == [3.0, 3.0]
    assert WarmupDecay.from_config(cosine.get_config()).get_config() == cosine.get_config()


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.LayerNormalization(),
                              keras.layers.Dense(2)])
    return model


def test_weight_decay_skips_one_dimensional_variables():
    model = _tiny_model()
    optimizer = build_optimizer(TrainConfig(weight_decay=0.1), model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed == {v.path for v in model.trainable_variables if len(v.shape) == 2}
    assert len(decayed) == 2  # the two kernels; biases and the norm's gamma/beta are excluded


def test_mixed_float16_adds_dynamic_loss_scaling_and_clipping_is_global():
    model = _tiny_model()
    optimizer = build_optimizer(TrainConfig(precision="mixed_float16", clip_norm=2.0), model.trainable_variables)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.inner_optimizer.global_clipnorm == 2.0
    plain = build_optimizer(TrainConfig(gradient_accumulation_steps=4), model.trainable_variables)
    assert plain.gradient_accumulation_steps == 4


def _manager(tmp_path, keep=2):
    model = _tiny_model()
    optimizer = build_optimizer(TrainConfig(), model.trainable_variables)
    return CheckpointManager(str(tmp_path / "checkpoints"), model, optimizer, keep=keep)


def test_save_restore_round_trip_and_keep_n(tmp_path):
    manager = _manager(tmp_path)
    originals = [keras.ops.convert_to_numpy(v.value).copy() for v in manager.model.variables]
    for step in (2, 4, 6):
        manager.save(step)
    assert manager.steps() == [4, 6]
    for variable in manager.model.variables:
        variable.assign(np.full(variable.shape, 7.0, dtype=variable.dtype))
    meta = manager.restore_latest()
    assert meta["step"] == 6 and meta["data_position"] == 6
    for original, variable in zip(originals, manager.model.variables, strict=True):
        np.testing.assert_array_equal(original, keras.ops.convert_to_numpy(variable.value))


def test_damaged_latest_checkpoint_falls_back_with_a_warning(tmp_path):
    manager = _manager(tmp_path, keep=3)
    manager.save(1)
    manager.save(2)
    state = os.path.join(manager.path(2), "state.npz")
    with open(state, "r+b") as file:
        file.truncate(os.path.getsize(state) // 2)
    with pytest.warns(UserWarning, match=r"skipping checkpoint .*step-000000002.*SHA-256"):
        assert manager.restore_latest()["step"] == 1


def test_unusable_checkpoints_raise_a_clear_error(tmp_path):
    manager = _manager(tmp_path)
    manager.save(3)
    other = CheckpointManager(manager.directory, keras.Sequential([keras.Input((3,)), keras.layers.Dense(9)]),
                              manager.optimizer)
    with pytest.raises(CheckpointError, match="model variables"), pytest.warns(UserWarning):
        other.restore_latest()
    assert CheckpointManager(str(tmp_path / "empty"), manager.model, manager.optimizer).restore_latest() is None


def test_interrupted_writes_leave_no_checkpoint_behind(tmp_path):
    manager = _manager(tmp_path)
    manager.save(5)
    staging = os.path.join(manager.directory, ".tmp-step-000000009-deadbeef")
    os.makedirs(staging)  # a writer killed before its rename
    with open(os.path.join(staging, "state.npz"), "wb") as file:
        file.write(b"partial")
    assert manager.steps() == [5]
    manager.save(6)
    assert not os.path.exists(staging)
    with open(os.path.join(manager.path(6), "meta.json")) as file:
        assert json.load(file)["variables"]["model"][0][1] == [3, 4]


def test_resaving_a_step_replaces_it_whole_and_leaves_nothing_aside(tmp_path):
    manager = _manager(tmp_path, keep=3)
    manager.save(4)
    first = manager.model.variables[0]
    first.assign(np.full(first.shape, 3.0, dtype=first.dtype))
    manager.save(4)  # e.g. the final save landing on a periodic checkpoint's step
    assert manager.steps() == [4]
    assert sorted(os.listdir(manager.directory)) == ["step-000000004"]
    first.assign(np.zeros(first.shape, dtype=first.dtype))
    assert manager.restore_latest()["step"] == 4
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first.value), np.full(first.shape, 3.0))
