import os
import subprocess
import sys

import numpy as np
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
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert rows["bert_base"] == ["bert", "109,482,240"]
    assert rows["gpt2_small"] == ["gpt", "124,439,808"]
    assert rows["tinyllama_1_1b"] == ["gpt", "1,100,048,384"]
    assert "t5_test" in rows
    lines = out.splitlines()
    column = lines[0].index("family")  # every row's family starts under the header, past the longest name
    assert all(line[column - 1] == " " and line[column:].split()[0] in ("bert", "gpt", "seq2seq") for line in lines[1:])


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
    assert cli.main(["convert", directory, "--output", str(output), "--family", "bert"]) == 2
    assert "holds a 'gpt2' checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli.main(["convert", directory, "--output", str(blocker / "gpt2.keras")]) == 2  # a folder that is a file
    error = capsys.readouterr().err
    assert error.startswith(f"kzoo convert: cannot write {blocker / 'gpt2.keras'}: ") and error.count("\n") == 1


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
                     "--output-dir", str(output)]) == 2  # a fixable error, like every kzoo command
    assert "kzoo vocab:" in capsys.readouterr().err


def _one_line_error(capsys):
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1, error
    return error


def test_convert_of_a_missing_or_incomplete_checkpoint_is_one_line(tmp_path, capsys):
    assert cli.main(["convert", str(tmp_path / "missing"), "--output", str(tmp_path / "m.keras")]) == 2
    assert _one_line_error(capsys).startswith("kzoo convert: ")
    from tests.convert import hf_fixtures

    directory, _ = hf_fixtures.make_gpt2(tmp_path)
    capsys.readouterr()  # transformers' own progress output
    import safetensors.numpy

    weights = safetensors.numpy.load_file(os.path.join(directory, "model.safetensors"))
    weights["transformer.extra.weight"] = np.zeros((2, 2), "float32")  # listed on its own line by the importer
    safetensors.numpy.save_file(weights, os.path.join(directory, "model.safetensors"))
    assert cli.main(["convert", directory, "--output", str(tmp_path / "m.keras")]) == 2
    assert "unused weights in checkpoint: 1 of" in _one_line_error(capsys)


@pytest.mark.parametrize("content,message", [
    ("model: [unclosed\n", "cannot read"),
    ("- a list\n- not a mapping\n", "holds a YAML list, not the mapping"),
])
def test_eval_of_an_unreadable_config_yaml_is_one_line(content, message, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(content)
    assert cli.main(["eval", str(tmp_path)]) == 2
    error = _one_line_error(capsys)
    assert error.startswith("kzoo eval: ") and message in error


def test_smoke_refuses_an_output_dir_it_cannot_write_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli.main(["smoke", "--steps", "1", "--output-dir", str(blocker / "out"), "--quiet"]) == 2
    assert _one_line_error(capsys).startswith(f"kzoo smoke: cannot write to --output-dir {blocker / 'out'}: ")
