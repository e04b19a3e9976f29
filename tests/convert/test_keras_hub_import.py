"""Imported keras-hub presets reproduce keras-hub's outputs (fp32, atol 1e-4).

Each reference is a tiny keras-hub backbone of small, odd sizes whose weights are
all re-drawn at random (layer norm gammas around 1, everything else around 0, so
that a zero bias or a unit gain cannot hide a mapping bug), saved locally with
`save_to_preset` together with a tiny tokenizer; nothing is downloaded. Only real
(non-padding) positions are compared: what a model computes at padding is undefined.
"""

import json
import types

import keras
import keras_hub
import numpy as np
import pytest

from kzoo import models
from kzoo.convert import keras_hub as kh_import
from kzoo.convert.keras_hub import convert_backbone, from_keras_hub
from tests.harness import to_numpy

PARITY_ATOL = 1e-4
SIZES = dict(vocabulary_size=97, num_layers=2, num_heads=4, hidden_dim=24, intermediate_dim=37, max_sequence_length=32)
NUM_SEGMENTS = 3
SPREAD = 0.3


def _randomize(backbone, seed):
    """Uniform(-SPREAD, SPREAD) for every weight; layer norm gammas get 1 + that."""
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        value = rng.uniform(-SPREAD, SPREAD, variable.shape)
        if variable.path.endswith("gamma"):
            value = value + 1.0
        variable.assign(value.astype("float32"))


def _random_inputs(seed, batch=3, length=11, vocabulary_size=97):
    """Right-padded ids `(b, s)` (one full row, two shorter) and their padding mask."""
    rng = np.random.default_rng(seed)
    lengths = np.array([length, 7, 3])[:batch]
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(1, vocabulary_size, (batch, length)).astype("int32") * mask
    return ids, mask


def _close(got, want, mask=None):
    got, want = to_numpy(got), np.asarray(want)
    assert got.shape == want.shape
    if mask is not None:
        keep = mask.astype(bool)
        got, want = got[keep], want[keep]
    difference = float(np.max(np.abs(got - want)))
    assert difference <= PARITY_ATOL, f"max abs difference {difference:.2e} > {PARITY_ATOL}"
    return difference


def _report(what, difference):
    print(f"[{keras.backend.backend()}] {what}: max abs difference {difference:.2e}")


@pytest.fixture(scope="module")
def bert_preset(tmp_path_factory):
    """A saved random keras-hub BERT preset with a WordPiece tokenizer, and its outputs."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(**SIZES, num_segments=NUM_SEGMENTS, dtype="float32")
    _randomize(backbone, seed=1)
    directory = tmp_path_factory.mktemp("keras_hub_bert")
    backbone.save_to_preset(str(directory))
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"]
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(directory))
    ids, mask = _random_inputs(seed=2)
    segments = ((np.arange(ids.shape[1])[None, :] // 4) % NUM_SEGMENTS * mask).astype("int32")
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}
    outputs = backbone(inputs)
    return types.SimpleNamespace(
        directory=directory,
        inputs=inputs,
        mask=mask,
        sequence_output=to_numpy(outputs["sequence_output"]),
        pooled_output=to_numpy(outputs["pooled_output"]),
        weight_paths=sorted(w.path for w in backbone.weights),
    )


@pytest.fixture(scope="module")
def gpt2_preset(tmp_path_factory):
    """A saved random keras-hub GPT-2 preset with a byte-pair tokenizer, and its outputs."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(**SIZES, dtype="float32")
    _randomize(backbone, seed=3)
    directory = tmp_path_factory.mktemp("keras_hub_gpt2")
    backbone.save_to_preset(str(directory))
    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3, "\u0120": 4}
    keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b"]).save_to_preset(str(directory))
    ids, mask = _random_inputs(seed=4)
    inputs = {"token_ids": ids, "padding_mask": mask}
    hidden = to_numpy(backbone(inputs))
    embeddings = to_numpy(backbone.token_embedding.embeddings)
    return types.SimpleNamespace(
        directory=directory,
        inputs=inputs,
        mask=mask,
        sequence_output=hidden,
        logits=hidden @ embeddings.T,  # GPT-2's LM head is tied to the token embedding
        weight_paths=sorted(w.path for w in backbone.weights),
    )


def _tiny_gpt2():
    """An unsaved random keras-hub GPT-2 (same sizes as the preset, so JAX reuses its compiled ops)."""
    backbone = keras_hub.models.GPT2Backbone(**SIZES)
    _randomize(backbone, seed=5)
    return backbone


# === Parity ===


def test_bert_preset_matches_keras_hub(bert_preset):
    imported = from_keras_hub(bert_preset.directory)
    assert imported.family == "bert"
    assert isinstance(imported.model, models.BertBackbone)
    assert imported.backbone is imported.model
    assert imported.hf_config["hidden_dim"] == SIZES["hidden_dim"]
    assert imported.hf_config["num_segments"] == NUM_SEGMENTS
    # keras-hub's BERT uses the tanh approximation of GELU and epsilon 1e-12.
    config = imported.model.get_config()
    assert (config["activation"], config["norm_epsilon"]) == ("gelu_tanh", 1e-12)
    assert set(imported.tokenizer_files) == {"tokenizer.json", "vocabulary.txt"}
    assert imported.tokenizer_files["vocabulary.txt"] == str(bert_preset.directory / "assets/tokenizer/vocabulary.txt")

    outputs = imported.model(bert_preset.inputs)
    _report("BERT sequence_output", _close(outputs["sequence_output"], bert_preset.sequence_output, bert_preset.mask))
    _report("BERT pooled_output", _close(outputs["pooled_output"], bert_preset.pooled_output))


def test_gpt2_preset_matches_keras_hub(gpt2_preset):
    imported = from_keras_hub(str(gpt2_preset.directory), family="gpt")
    assert imported.family == "gpt"
    assert isinstance(imported.model, models.GPTCausalLM)
    assert isinstance(imported.backbone, models.GPTBackbone)
    assert imported.hf_config["vocabulary_size"] == SIZES["vocabulary_size"]
    config = imported.backbone.get_config()
    assert (config["activation"], config["norm_epsilon"]) == ("gelu_tanh", 1e-5)
    assert set(imported.tokenizer_files) == {"tokenizer.json", "vocabulary.json", "merges.txt"}

    hidden = imported.backbone(gpt2_preset.inputs)["sequence_output"]
    _report("GPT-2 sequence_output", _close(hidden, gpt2_preset.sequence_output, gpt2_preset.mask))
    logits = imported.model(gpt2_preset.inputs)
    _report("GPT-2 logits", _close(logits, gpt2_preset.logits, gpt2_preset.mask))


def test_dtype_policy_is_applied(gpt2_preset):
    imported = from_keras_hub(gpt2_preset.directory, dtype="mixed_bfloat16")
    assert imported.backbone.token_embedding.dtype_policy.name == "mixed_bfloat16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in imported.backbone.weights)
    logits = imported.model(gpt2_preset.inputs)
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    logits = to_numpy(keras.ops.cast(logits, "float32"))
    keep = gpt2_preset.mask.astype(bool)
    assert np.max(np.abs(logits[keep] - gpt2_preset.logits[keep])) < 0.25  # bfloat16 compute


# === Every weight is mapped exactly once ===


@pytest.mark.parametrize("which", ["bert", "gpt2"])
def test_mapping_copies_every_weight_once(which, bert_preset, gpt2_preset, monkeypatch):
    preset = bert_preset if which == "bert" else gpt2_preset
    copies = []
    real_assign = kh_import.assign

    def spy(variable, value, name=None):
        copies.append((name, variable.path))
        return real_assign(variable, value, name)

    monkeypatch.setattr(kh_import, "assign", spy)
    imported = from_keras_hub(preset.directory)
    source_names = [name for name, _ in copies]
    target_paths = [path for _, path in copies]
    assert len(copies) == len(preset.weight_paths)
    assert sorted(source_names) == preset.weight_paths  # each keras-hub weight once
    assert sorted(target_paths) == sorted(w.path for w in imported.backbone.weights)  # each kzoo weight once
    assert len(set(target_paths)) == len(target_paths)


def test_unmapped_weight_is_an_error(monkeypatch):
    """A converter that forgets a layer fails, naming the weights of both sides."""
    real_copy_layer_norm = kh_import._copy_layer_norm

    def forget_final_norm(weights, source, target):
        if source.name != "layer_norm":
            real_copy_layer_norm(weights, source, target)

    monkeypatch.setattr(kh_import, "_copy_layer_norm", forget_final_norm)
    with pytest.raises(ValueError) as error:
        convert_backbone(_tiny_gpt2())
    message = str(error.value)
    assert "2 of 36 keras-hub weights were not mapped:\n  layer_norm/gamma [24]\n  layer_norm/beta [24]" in message
    assert "2 of 36 kzoo weights received no value:" in message
    assert "final_norm/scale [24]" in message and "final_norm/bias [24]" in message


def test_weight_copied_twice_is_an_error():
    backbone = _tiny_gpt2()
    target = models.GPTBackbone(**SIZES)
    copier = kh_import._WeightCopier(backbone, target)
    copier.copy(backbone.token_embedding.embeddings, target.token_embedding.embeddings)
    with pytest.raises(ValueError, match="mapped twice"):
        copier.copy(backbone.token_embedding.embeddings, target.token_embedding.embeddings)
    with pytest.raises(ValueError, match=r"kzoo weights received no value"):
        copier.finish()


def test_quantized_backbone_object_is_refused():
    backbone = _tiny_gpt2()
    backbone.transformer_layers[0]._feedforward_output_dense.quantize("int8")  # one layer is enough, and fast
    with pytest.raises(
        ValueError, match=r"non-float \(quantized\) weights, e.g. \['transformer_layer_0/feedforward_out"
    ):
        convert_backbone(backbone)


def test_unsupported_backbone_object_is_refused():
    with pytest.raises(ValueError, match=r"'Dense' is not supported; kzoo imports \['BertBackbone', 'GPT2Backbone'\]"):
        convert_backbone(keras.layers.Dense(3))


# === Errors about the directory ===


def test_wrong_family_is_refused(bert_preset):
    with pytest.raises(ValueError, match=r"holds a 'BertBackbone' preset \(bert family\), not a 'gpt' model"):
        from_keras_hub(bert_preset.directory, family="gpt")
    with pytest.raises(ValueError, match=r"family='seq2seq' is not importable from keras-hub"):
        from_keras_hub(bert_preset.directory, family="seq2seq")


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"keras-hub preset directory '.*missing' does not exist"):
        from_keras_hub(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        from_keras_hub(tmp_path / "file")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"No config.json in keras-hub preset directory .*the directory is empty"):
        from_keras_hub(tmp_path)


def _write_config(directory, config, weights=True):
    (directory / "config.json").write_text(json.dumps(config))
    if weights:
        (directory / "model.weights.h5").write_bytes(b"")
    return directory


def test_directory_that_is_not_a_keras_hub_preset_is_refused(tmp_path):
    _write_config(tmp_path, {"name": "x"})
    with pytest.raises(ValueError, match=r"is not a keras-hub preset: its config.json has keys \['name'\]"):
        from_keras_hub(tmp_path)
    _write_config(tmp_path, {"model_type": "bert", "hidden_size": 8})
    with pytest.raises(ValueError, match=r"is a Hugging Face checkpoint .* `kzoo.convert.from_huggingface`"):
        from_keras_hub(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="is not valid JSON"):
        from_keras_hub(tmp_path)


def test_unsupported_class_is_refused(tmp_path):
    config = {
        "module": "keras_hub.src.models.gemma.gemma_backbone",
        "class_name": "GemmaBackbone",
        "config": {"vocabulary_size": 7},
        "registered_name": "keras_hub>GemmaBackbone",
    }
    _write_config(tmp_path, config)
    with pytest.raises(
        ValueError,
        match=r"preset of class 'GemmaBackbone' is not supported; kzoo imports \['BertBackbone', 'GPT2Backbone'\]",
    ):
        from_keras_hub(tmp_path)


def test_preset_without_weights_is_refused(bert_preset, tmp_path):
    (tmp_path / "config.json").write_text((bert_preset.directory / "config.json").read_text())
    with pytest.raises(ValueError, match=r"No weights in keras-hub preset directory .*model.weights.h5"):
        from_keras_hub(tmp_path)


def test_quantized_preset_is_refused(bert_preset, tmp_path):
    config = json.loads((bert_preset.directory / "config.json").read_text())
    config["config"]["dtype"] = {"module": "keras", "class_name": "DTypePolicyMap", "config": {}}
    _write_config(tmp_path, config)
    with pytest.raises(ValueError, match="quantized keras-hub preset"):
        from_keras_hub(tmp_path)
    config["config"]["dtype"] = "int8_from_float32"
    _write_config(tmp_path, config)
    with pytest.raises(ValueError, match=r"quantized keras-hub preset \(dtype 'int8_from_float32'\)"):
        from_keras_hub(tmp_path)


def test_cli_convert_detects_a_keras_hub_preset(bert_preset, tmp_path, capsys):
    from kzoo import cli

    output = tmp_path / "bert.keras"
    assert cli.main(["convert", str(bert_preset.directory), "--output", str(output)]) == 0
    assert "keras-hub checkpoint -> BertBackbone" in capsys.readouterr().out
    restored = keras.saving.load_model(output)
    got = to_numpy(restored(bert_preset.inputs)["sequence_output"])
    _close(got, bert_preset.sequence_output, bert_preset.mask)
