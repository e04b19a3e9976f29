"""Dotted, type-checked overrides, YAML files and validation of the training config."""

import dataclasses
import typing
import warnings

import pytest

from kzoo.train.config import ConfigError, TrainConfig, describe, parse_command_line, write_resolved


@dataclasses.dataclass
class DataSection:
    RENAMED_KEYS: typing.ClassVar[dict] = {"max_length": "sequence_length"}

    sequence_length: int = 64
    train_files: str = ""
    steps: int = 1  # deliberately clashes with train.steps


@dataclasses.dataclass
class Config:
    data: DataSection = dataclasses.field(default_factory=DataSection)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def test_dotted_and_bare_keys_with_both_value_styles():
    config = parse_command_line(Config(), ["--train.learning_rate=5e-4", "--sequence_length", "128",
                                           "--train.xla", "--batch-size=16", "--clip_norm=0"])
    assert config.train.learning_rate == 5e-4 and isinstance(config.train.learning_rate, float)
    assert config.data.sequence_length == 128
    assert config.train.xla is True
    assert config.train.batch_size == 16
    assert config.train.clip_norm == 0.0


@pytest.mark.parametrize("argv", [["--data.max_length=128"], ["--max_length", "128"], ["--max-length=128"]])
def test_a_renamed_key_still_works_with_a_warning_naming_the_new_key(argv, tmp_path):
    with pytest.warns(FutureWarning, match=r"config key 'data\.max_length' is now 'data\.sequence_length'") as caught:
        config = parse_command_line(Config(), argv)
    assert config.data.sequence_length == 128 and len(caught) == 1
    (tmp_path / "old.yaml").write_text("data:\n  max_length: 96\n")
    with pytest.warns(FutureWarning, match="is now 'data.sequence_length'"):
        assert parse_command_line(Config(), ["--config", str(tmp_path / "old.yaml")]).data.sequence_length == 96
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name: no warning
        assert parse_command_line(Config(), ["--sequence_length=8"]).data.sequence_length == 8


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.stepz'.*train\.steps"):
        parse_command_line(Config(), ["--train.stepz=3"])


def test_ambiguous_bare_key_names_the_dotted_choices():
    with pytest.raises(ConfigError, match=r"--steps is ambiguous.*--data\.steps.*--train\.steps"):
        parse_command_line(Config(), ["--steps=3"])


@pytest.mark.parametrize("argv, message", [
    (["--train.steps=ten"], r"train\.steps expects int, got 'ten'"),
    (["--train.xla=maybe"], r"train\.xla expects bool"),
    (["--train.batch_size"], r"--train\.batch_size needs a value"),
    (["stray"], r"unexpected argument 'stray'"),
])
def test_bad_values_are_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_command_line(Config(), argv)


def test_yaml_file_then_command_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 50\n  precision: mixed_bfloat16\ndata:\n  sequence_length: 32\n")
    config = parse_command_line(Config(), ["--config", str(path), "--train.steps=7"])
    assert (config.train.steps, config.train.precision, config.data.sequence_length) == (7, "mixed_bfloat16", 32)


def test_yaml_errors_are_config_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_command_line(Config(), [f"--config={tmp_path / 'bad.yaml'}"])
    (tmp_path / "unknown.yaml").write_text("train:\n  nonsense: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.nonsense'"):
        parse_command_line(Config(), [f"--config={tmp_path / 'unknown.yaml'}"])
    with pytest.raises(ConfigError, match="cannot read config file"):
        parse_command_line(Config(), [f"--config={tmp_path / 'missing.yaml'}"])


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, r"train\.steps must be >= 1"),
    ("precision", "float64", r"train\.precision must be one of"),
    ("strategy", "magic", r"train\.strategy must be one of"),
    ("learning_rate", 0.0, r"train\.learning_rate must be > 0"),
    ("profile_steps", "5", r"train\.profile_steps must be 'START,STOP'"),
])
def test_validation_names_the_field(field, value, message):
    config = TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_resolved_config_is_written_and_described(tmp_path):
    import yaml

    config = parse_command_line(Config(), ["--train.steps=9"])
    path = write_resolved(config, str(tmp_path))
    assert yaml.safe_load(open(path))["train"]["steps"] == 9
    assert (tmp_path / "config.json").exists()
    assert "--train.steps=9  (int)" in describe(config)


# --- values that parse but cannot work: named, never silently used -----------------------------------


@pytest.mark.parametrize("yaml_text, message", [
    ("train:\n  steps: yes\n", r"train\.steps expects int, got the boolean True \(YAML reads yes/no"),
    ("train:\n  learning_rate: on\n", r"train\.learning_rate expects float, got the boolean True"),
    ("train:\n  precision: no\n", r"train\.precision expects str, got the boolean False"),
    ("train:\n  learning_rate: .inf\n", r"train\.learning_rate must be a finite number, got inf"),
    ("train:\n  clip_norm: .nan\n", r"train\.clip_norm must be a finite number, got nan"),
    ("data:\n  train_files: [a.txt, b.txt]\n", r"data\.train_files expects one str.*comma-separated string"),
    ("data:\n  sequence_length: [1, 2]\n", r"data\.sequence_length expects one int, got \[1, 2\]"),
])
def test_yaml_values_of_the_wrong_kind_are_named(tmp_path, yaml_text, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        parse_command_line(Config(), ["--config", str(path)])


@pytest.mark.parametrize("argv, message", [
    (["--train.learning_rate=inf"], r"train\.learning_rate must be a finite number, got 'inf'"),
    (["--train.weight_decay=nan"], r"train\.weight_decay must be a finite number"),
    (["--train.clip_norm=-inf"], r"train\.clip_norm must be a finite number"),
])
def test_non_finite_command_line_floats_are_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_command_line(Config(), argv)


@pytest.mark.parametrize("values, message", [
    ({"steps": True}, r"train\.steps expects an int, got True"),
    ({"batch_size": 2.5}, r"train\.batch_size expects an int"),
    ({"learning_rate": float("inf")}, r"train\.learning_rate must be a finite number"),
    ({"clip_norm": float("nan")}, r"train\.clip_norm must be a finite number"),
    ({"weight_decay": float("nan")}, r"train\.weight_decay must be a finite number"),
    ({"end_learning_rate_ratio": False}, r"train\.end_learning_rate_ratio expects a float"),
    ({"xla": 1}, r"train\.xla expects true or false"),
    ({"weight_decay": -0.1}, r"train\.weight_decay must be >= 0"),
    ({"clip_norm": -1.0}, r"train\.clip_norm must be >= 0"),
    ({"seed": -1}, r"train\.seed must be >= 0"),
    ({"verbose": -1}, r"train\.verbose must be >= 0"),
    ({"resume": "sometimes"}, r"train\.resume must be one of \['never', 'auto', 'must'\]"),
    ({"devices": "gpu7"}, r"train\.devices: 'gpu7' is not a device name"),
    ({"devices": "/gpu:0", "strategy": "default"},
     r"train\.devices is used by the one_device, mirrored, data_parallel and auto"),
])
def test_validation_rejects_wrong_kinds_and_ranges_set_in_code(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values).validate()


def test_device_names_that_parse_are_accepted():
    TrainConfig(devices="/gpu:0,/GPU:1").validate()
    TrainConfig(devices="/device:CPU:0", strategy="one_device").validate()
    TrainConfig(devices="/job:worker/replica:0/task:1/device:GPU:0", strategy="mirrored").validate()


def test_resume_differences_leave_out_what_a_resumed_run_may_change():
    from kzoo.train.config import resume_differences, to_dict

    recorded = {"recipe": "gpt_pretrain", "data": {"train_files": "a.txt", "vocabulary_size": 256},
                "train": to_dict(TrainConfig(steps=10))}
    longer = {**recorded, "train": to_dict(TrainConfig(steps=500, learning_rate=1e-4, log_every=1, resume="must",
                                                       output_dir="elsewhere", eval_every=3, verbose=0))}
    assert resume_differences(recorded, longer) == []
    other = {**recorded, "data": {"train_files": "b.txt", "vocabulary_size": 256, "new_key": 1},
             "train": to_dict(TrainConfig(steps=10, batch_size=7, seed=1))}
    assert resume_differences(recorded, other) == [("data.train_files", "a.txt", "b.txt"),
                                                   ("train.batch_size", 32, 7), ("train.seed", 0, 1)]
    assert resume_differences(recorded, {**recorded, "recipe": "bert_pretrain"}) == [
        ("recipe", "gpt_pretrain", "bert_pretrain")]
