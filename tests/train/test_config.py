"""Dotted, type-checked overrides, YAML files and validation of the training config."""

import dataclasses

import pytest

from kzoo.train.config import ConfigError, TrainConfig, describe, parse_command_line, write_resolved


@dataclasses.dataclass
class DataSection:
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
