"""Start-up as a user meets it: the parser loads no backend, TensorFlow's start-up notices stay off the console."""

import os
import subprocess
import sys

from kzoo import cli
from kzoo.cli import quiet

PARSE_ONLY = """
import sys
import kzoo.cli
parser = kzoo.cli.build_parser()
for argv in (["--help"], ["--version"], ["train", "--help"]):
    try:
        parser.parse_args(argv)
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
print("loaded:", sorted(name for name in ("tensorflow", "keras", "jax") if name in sys.modules))
"""


def test_help_version_and_train_help_load_no_backend():
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kzoo [-h] [--version] [--verbose] COMMAND ...")
    assert "\nkzoo " in result.stdout  # --version
    assert "gpt_pretrain" in result.stdout and "bert_classify" in result.stdout  # train --help lists the recipes
    assert result.stdout.rstrip().endswith("loaded: []")


def test_a_command_keeps_tensorflow_start_up_notices_off_stderr():
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "tensorflow"
    script = "import sys, kzoo.cli; code = kzoo.cli.main(['models']); import tensorflow; sys.exit(code)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "bert_base" in result.stdout
    assert not [line for line in result.stderr.splitlines() if any(text in line for text in quiet.CHATTER)], (
        result.stderr)


def test_filter_drops_only_the_notices(capfd):
    with quiet.filtered_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see...\n")
        os.write(2, b"E0000 something real went wrong\n")
    assert capfd.readouterr().err == "E0000 something real went wrong\n"


def test_verbose_or_a_users_log_level_leaves_tensorflow_alone(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    finders = list(sys.meta_path)
    quiet.quiet_start(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and sys.meta_path == finders
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert cli.main(["--verbose", "layers"]) == 0 and cli.main(["layers"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and sys.meta_path == finders
