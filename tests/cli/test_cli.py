import subprocess
import sys

import pytest

from kzoo import cli


def test_smoke_job_trains_saves_and_reloads(tmp_path, capsys):
    code = cli.main(["smoke", "--steps", "40", "--output-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reloaded outputs differ by at most 0.00e+00" in out
    assert (tmp_path / "tiny_decoder.keras").is_file()


def test_layers_listing_names_every_layer(capsys):
    assert cli.main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in ("MultiHeadAttention", "DecoderBlock", "RelativePositionBias", "SpanHead"):
        assert name in out


def test_bad_flag_value_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["smoke", "--steps", "zero"])
    assert exit_info.value.code == 2


def test_console_script_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "kzoo.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("kzoo ")
