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


def test_models_listing_gives_family_and_parameters(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bert_base          bert       109,482,240" in out
    assert "gpt2_small         gpt        124,439,808" in out
    assert "t5_test" in out


def test_convert_writes_a_loadable_keras_file(tmp_path, capsys):
    import keras
    import numpy as np

    from tests.convert import hf_fixtures

    directory, _ = hf_fixtures.make_gpt2(tmp_path)
    output = tmp_path / "gpt2.keras"
    assert cli.main(["convert", directory, "--output", str(output), "--family", "gpt"]) == 0
    assert "gpt2 checkpoint -> GPTCausalLM" in capsys.readouterr().out
    model = keras.saving.load_model(output)
    ids = np.array([[1, 2, 3]], "int32")
    assert model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).shape == (1, 3, 113)
    assert cli.main(["convert", directory, "--output", str(output), "--family", "bert"]) == 1
    assert "holds a 'gpt2' checkpoint" in capsys.readouterr().err


def test_bad_flag_value_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["smoke", "--steps", "zero"])
    assert exit_info.value.code == 2


def test_console_script_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "kzoo.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("kzoo ")


def test_vocab_trains_a_wordpiece_vocabulary_from_the_default_prose(tmp_path, capsys):
    from kzoo.data import corpora
    from kzoo.text import tokenizer_from_files

    documents = corpora.write_default_corpus("lm", str(tmp_path))["documents"]
    files = sorted(str(path) for path in (tmp_path / "lm").glob("*.txt"))[:10]
    assert documents and files
    output = tmp_path / "vocab"
    assert cli.main(["vocab", *files, "--vocabulary-size", "300", "--output-dir", str(output)]) == 0
    tokenizer = tokenizer_from_files({"vocab.txt": str(output / "vocab.txt")})
    assert 100 < tokenizer.vocabulary_size <= 300
    assert cli.main(["vocab", str(tmp_path / "missing.txt"), "--vocabulary-size", "300",
                     "--output-dir", str(output)]) == 1
    assert "kzoo vocab:" in capsys.readouterr().err
