"""The schedule, the optimizer's weight-decay exclusions and loss scaling, and checkpoint files."""

import json
import math
import os
import shutil

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


# --- damaged and edited checkpoints never win over good ones ---------------------------------------


def _damage(manager, step, how):
    """Makes the checkpoint of `step` unusable: "state" truncates state.npz, "meta" replaces meta.json's text."""
    if how == "state":
        state = os.path.join(manager.path(step), "state.npz")
        with open(state, "r+b") as file:
            file.truncate(os.path.getsize(state) // 2)
    else:
        with open(os.path.join(manager.path(step), "meta.json"), "w") as file:
            file.write(how)


def test_pruning_counts_only_good_checkpoints_and_keeps_the_one_just_written(tmp_path):
    manager = _manager(tmp_path, keep=3)
    for step in (5, 10, 15):
        manager.save(step)
    for step in (35, 40, 45):  # junk with higher numbers than every good checkpoint
        shutil.copytree(manager.path(15), manager.path(step))
        _damage(manager, step, "state")
    resumed = _manager(tmp_path, keep=3)
    with pytest.warns(UserWarning, match="step-000000045"):
        assert resumed.restore_latest()["step"] == 15
    resumed.save(20)
    assert resumed.steps() == [10, 15, 20, 35, 40, 45]  # three good ones kept; the junk never counts
    resumed.save(25)
    assert resumed.steps() == [15, 20, 25, 35, 40, 45]
    fresh = _manager(tmp_path, keep=3)
    with pytest.warns(UserWarning):
        assert fresh.restore_latest()["step"] == 25


def test_pruning_never_deletes_the_restored_checkpoint_for_good_incompatible_ones(tmp_path):
    manager = _manager(tmp_path, keep=1)
    other = CheckpointManager(manager.directory, keras.Sequential([keras.Input((3,)), keras.layers.Dense(9)]),
                              manager.optimizer, keep=1)
    other.save(50)  # whole, but of another model: not good for this one
    manager.save(3)
    assert manager.steps() == [3, 50]
    resumed = _manager(tmp_path, keep=1)
    with pytest.warns(UserWarning, match="step-000000050"):
        assert resumed.restore_latest()["step"] == 3
    resumed.save(4)
    assert resumed.steps() == [4, 50]


@pytest.mark.parametrize("edit, reason", [
    (lambda meta: {**meta, "step": 27}, "meta.json does not match its recorded SHA-256"),
    (lambda meta: {**meta, "sha256": "0" * 64}, "meta.json does not match its recorded SHA-256"),
    (lambda meta: [], "meta.json holds a JSON list"),
    (lambda meta: {key: value for key, value in meta.items() if key != "meta_sha256"} | {"step": 27},
     "meta.json says step 27, its folder step 25"),  # a checkpoint without meta_sha256 (older kzoo)
    (lambda meta: {key: value for key, value in meta.items() if key != "meta_sha256"} | {"variables": []},
     "meta.json has no valid variable listing"),
])
def test_edited_or_damaged_meta_falls_back_to_the_previous_checkpoint(tmp_path, edit, reason):
    manager = _manager(tmp_path, keep=3)
    manager.save(20)
    manager.save(25)
    path = os.path.join(manager.path(25), "meta.json")
    with open(path) as file:
        meta = json.load(file)
    with open(path, "w") as file:
        json.dump(edit(meta), file)
    with pytest.warns(UserWarning, match=rf"skipping checkpoint .*step-000000025: {reason}"):
        restored = manager.restore_latest()
    assert restored["step"] == 20 and restored["data_position"] == 20
    assert manager.latest_step() == 20


def test_meta_that_is_not_json_and_a_missing_state_fall_back(tmp_path):
    manager = _manager(tmp_path, keep=3)
    manager.save(1)
    manager.save(2)
    manager.save(3)
    _damage(manager, 3, "{not json")
    os.remove(os.path.join(manager.path(2), "state.npz"))
    with pytest.warns(UserWarning) as caught:
        assert manager.restore_latest()["step"] == 1
    messages = [str(warning.message) for warning in caught]
    assert "meta.json is unreadable" in messages[0] and "state.npz is unreadable" in messages[1]


def test_every_checkpoint_unreadable_is_one_error_naming_the_folder(tmp_path):
    manager = _manager(tmp_path, keep=3)
    manager.save(1)
    manager.save(2)
    _damage(manager, 1, "[]")
    _damage(manager, 2, "state")
    with pytest.raises(CheckpointError, match=r"none of the 2 checkpoints in .*checkpoints could be restored "
                                              r".*point --train.output_dir elsewhere"), pytest.warns(UserWarning):
        manager.restore_latest()
    assert manager.steps() == [1, 2]  # nothing deleted


def test_checkpoints_path_that_is_a_file_is_a_run_folder_error(tmp_path):
    from kzoo.train.checkpoint import RunFolderError

    manager = _manager(tmp_path)
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(RunFolderError, match=r"checkpoints is a file, not a checkpoint folder.*--train.output_dir"):
        manager.restore_latest()
    with pytest.raises(RunFolderError):
        manager.save(1)
    assert (tmp_path / "checkpoints").read_text() == "not a folder"


def test_resume_modes_and_config_compatibility(tmp_path):
    from kzoo.train.config import ConfigError

    manager = _manager(tmp_path)
    run = {"recipe": "r", "data": {"train_files": "a.txt"}, "train": {"steps": 10, "batch_size": 4}}
    manager.check_resume("auto", run)  # nothing to resume: a fresh run
    with pytest.raises(ConfigError, match=r"--train.resume=must, but there is no checkpoint in .*checkpoints"):
        manager.check_resume("must", run)
    manager.save(2, extra={"config": run})
    manager.check_resume("auto", {**run, "train": {"steps": 50, "batch_size": 4}})  # a longer run resumes
    manager.check_resume("must", run)
    with pytest.raises(ConfigError, match=r"--train.resume=never, but .*checkpoints already holds checkpoints "
                                          r"\(newest: step 2\); choose a new --train.output_dir"):
        manager.check_resume("never", run)
    changed = {**run, "data": {"train_files": "b.txt"}, "train": {"steps": 10, "batch_size": 8}}
    with pytest.raises(ConfigError, match=r"written with a different configuration \(data.train_files was 'a.txt', "
                                          r"now 'b.txt'; train.batch_size was 4, now 8\).*new --train.output_dir"):
        manager.check_resume("auto", changed)


def test_a_meta_edited_to_hold_nan_is_damaged_not_a_crash(tmp_path):
    manager = _manager(tmp_path, keep=3)
    manager.save(1)
    manager.save(2)
    path = os.path.join(manager.path(2), "meta.json")
    text = open(path).read().replace('"data_position": 2', '"data_position": NaN')
    with open(path, "w") as file:
        file.write(text)
    with pytest.warns(UserWarning, match="step-000000002: meta.json does not match its recorded SHA-256"):
        assert manager.restore_latest()["step"] == 1
