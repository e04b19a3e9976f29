"""Keras-quantized kzoo models (`model.quantize("int8" | "int4" | "float8")`) save to `.keras` and reload quantized,
with bit-identical outputs, through `kzoo.saving.load_model` (whose size check counts what a quantized file
stores) and through Keras' own loader; an edited quantized file is still refused."""

import json
import os
import warnings
import zipfile

import keras
import numpy as np
import pytest

from kzoo import cli, models, saving
from kzoo.models.backbone import count_serialized_parameters
from kzoo.models.quantization import collections_of_new_objects_only, quantize_model, quantized_values
from kzoo.saving import ModelFileError
from tests.generate.helpers import tiny_gpt, tiny_seq2seq
from tests.harness import to_numpy

VOCABULARY = 61
IDS = np.array([[5, 6, 7, 8, 9, 0], [10, 11, 12, 13, 14, 15]], "int32")


def _bert_inputs():
    return {"token_ids": IDS, "segment_ids": np.zeros_like(IDS), "padding_mask": (IDS > 0).astype("int32")}


def _seq2seq_inputs():
    mask = (IDS > 0).astype("int32")
    return {"encoder_token_ids": IDS, "encoder_padding_mask": mask, "decoder_token_ids": IDS[:, :4],
            "decoder_padding_mask": mask[:, :4]}


def _bert(**overrides):
    return models.from_preset("bert_test", vocabulary_size=VOCABULARY, dropout=0.0, **overrides)


# Each kzoo task model (and the tiny backbone it wraps) with inputs: `(build, inputs)`.
MODELS = {
    "gpt": (lambda: models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=VOCABULARY, dropout=0.0)),
            lambda: {"token_ids": IDS, "padding_mask": (IDS > 0).astype("int32")}),
    "bert_pretrainer": (lambda: models.BertPretrainer(_bert()),
                        lambda: {**_bert_inputs(), "mask_positions": np.array([[1, 3], [0, 5]], "int32")}),
    "bert_classifier": (lambda: models.BertClassifier(_bert(), num_classes=3, dropout=0.0), _bert_inputs),
    "bert_token_classifier": (lambda: models.BertTokenClassifier(_bert(), num_classes=5, dropout=0.0),
                              _bert_inputs),
    "bert_span_qa": (lambda: models.BertSpanQA(_bert()), _bert_inputs),
    "t5": (lambda: models.Seq2SeqLM(models.from_preset("t5_test", vocabulary_size=VOCABULARY, dropout=0.0)),
           _seq2seq_inputs),
    # BART's design (biases, learned positions, post-norm) and T5 v1.1's (gated feed-forward) at test size.
    "bart": (lambda: tiny_seq2seq("bart", vocabulary_size=VOCABULARY), _seq2seq_inputs),
    "t5_gated": (lambda: tiny_seq2seq("t5", vocabulary_size=VOCABULARY), _seq2seq_inputs),
}


def quantize(model, mode, config=None):
    """Keras' `quantize` itself (with any `config`), collecting garbage as `kzoo.models.quantization` does."""
    with warnings.catch_warnings(), collections_of_new_objects_only():
        warnings.simplefilter("ignore")  # Keras warns for each leaf layer it does not quantize (norms, embeddings)
        model.quantize(mode, config=config)
    return model


def _quantized(name, mode, seed=0):
    keras.utils.set_random_seed(seed)
    build, inputs = MODELS[name]
    return quantize(build(), mode), inputs()


def _modes(model):
    return {layer.path: layer.quantization_mode for layer in model._flatten_layers() if layer.quantization_mode}


def _assert_same_outputs(actual, expected):
    for got, want in zip(keras.tree.flatten(actual), keras.tree.flatten(expected), strict=True):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))


def _round_trip(model, inputs, path):
    """Saves `model`, reloads it with kzoo and with Keras, and checks both are quantized as it is and give
    bit-identical outputs. Returns the kzoo-loaded model."""
    expected = model(inputs)
    model.save(path)
    for loaded in (saving.load_model(path), keras.saving.load_model(path)):
        assert type(loaded) is type(model)
        assert _modes(loaded) == _modes(model)
        _assert_same_outputs(loaded(inputs), expected)
    return loaded


@pytest.mark.backend("tensorflow", reason="counts from configs and checks on files, the same under every backend")
@pytest.mark.parametrize(("name", "mode"), [(name, "int8") for name in sorted(MODELS) if name != "t5"] + [
    ("gpt", "int4"), ("gpt", "float8"), ("bart", "float8")])
def test_the_declared_count_is_what_a_quantized_model_stores(name, mode):
    """`count_serialized_parameters` (what kzoo.saving checks before building) against the model's variables."""
    model, _ = _quantized(name, mode)
    stored = sum(int(np.prod(variable.shape)) for variable in model.weights)
    assert count_serialized_parameters(keras.layers.serialize(model)) == stored
    assert count_serialized_parameters(keras.layers.serialize(model.backbone)) == sum(
        int(np.prod(variable.shape)) for variable in model.backbone.weights)


@pytest.mark.parametrize(("name", "mode"), [("gpt", "int8"), ("bert_pretrainer", "int8"), ("t5", "int8"),
                                            ("gpt", "int4"), ("bert_classifier", "float8")])
def test_quantized_models_reload_quantized_with_identical_outputs(name, mode, tmp_path):
    model, inputs = _quantized(name, mode)
    head = {"bert_pretrainer": "masked_lm_head/transform", "bert_classifier": "classification_head/logits"}
    if name in head:  # the task's own head is quantized by model.quantize too, and reloads quantized
        assert _modes(model)[head[name]] == mode
    loaded = _round_trip(model, inputs, tmp_path / "model.keras")
    # Saving the reloaded model again writes the same config (the map is rebuilt from the layers) and weights.
    loaded.save(tmp_path / "again.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as first, zipfile.ZipFile(tmp_path / "again.keras") as second:
        assert json.loads(first.read("config.json")) == json.loads(second.read("config.json"))
    _assert_same_outputs(saving.load_model(tmp_path / "again.keras")(inputs), model(inputs))


def test_per_channel_int4_reloads(tmp_path):
    """`Int4QuantizationConfig(block_size=-1)`: one scale per output unit, no zero points."""
    from keras.quantizers import Int4QuantizationConfig

    keras.utils.set_random_seed(0)
    build, inputs = MODELS["bert_classifier"]
    model = quantize(build(), "int4", Int4QuantizationConfig(block_size=-1))
    _round_trip(model, inputs(), tmp_path / "model.keras")


def test_a_quantized_backbone_saved_alone_reloads(tmp_path):
    model, _ = _quantized("bert_classifier", "int8")
    backbone = model.backbone
    loaded = _round_trip(backbone, _bert_inputs(), tmp_path / "backbone.keras")
    assert "classification_head/logits" not in _modes(loaded)


def test_lora_on_a_quantized_base_saves_merged_and_requantized(tmp_path):
    model, inputs = _quantized("gpt", "int8")
    model.backbone.enable_lora(2, targets=("query", "value", "up"))
    rng = np.random.default_rng(0)
    for variable in model.weights:  # adapters that matter (B starts at zero)
        if variable.path.endswith("lora_kernel_b"):
            variable.assign(rng.normal(0.0, 0.5, variable.shape).astype("float32"))
    adapted = to_numpy(model(inputs))
    model.save(tmp_path / "lora.keras")
    loaded = saving.load_model(tmp_path / "lora.keras")
    assert set(_modes(loaded).values()) == {"int8"} and _modes(loaded) == _modes(model)
    assert not any(getattr(layer, "lora_enabled", False) for layer in loaded._flatten_layers())
    # Keras merges W + (alpha / r) A B into the kernel and quantizes the sum again: close to the adapted model,
    # not to the base one.
    reloaded = to_numpy(loaded(inputs))
    base = to_numpy(_quantized("gpt", "int8")[0](inputs))
    error = np.abs(reloaded - adapted).max()
    assert error < 0.05 * np.abs(adapted - base).max(), (error, np.abs(adapted - base).max())


def test_quantized_values_counts_what_keras_stores():
    """The count formula against the variables Keras creates for one Dense kernel in each mode."""
    from keras.quantizers import Int4QuantizationConfig

    for mode, config in [("int8", None), ("int4", None), ("int4", Int4QuantizationConfig(block_size=-1)),
                         ("int4", Int4QuantizationConfig(block_size=4)), ("float8", None)]:
        dense = keras.layers.Dense(7, use_bias=False)
        dense.build((None, 10))
        quantize(dense, mode, config)
        stored = sum(int(np.prod(variable.shape)) for variable in dense.weights)
        assert quantized_values(dense.dtype_policy, 10, 7) == stored, (mode, config)


def test_quantizing_leaves_the_garbage_collector_as_it_found_it():
    """`quantize_model` freezes the objects alive before it (Keras collects garbage per replaced kernel) and
    unfreezes them after, also when quantization fails."""
    import gc

    frozen = gc.get_freeze_count()
    model, _ = _quantized("gpt", "int8")
    assert gc.get_freeze_count() == frozen
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(model, "int8")
    with pytest.raises(RuntimeError, match="inside"), collections_of_new_objects_only():
        assert gc.get_freeze_count() > frozen
        raise RuntimeError("inside")
    assert gc.get_freeze_count() == frozen


# --- edited quantized files are still refused --------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    model, _ = _quantized("bert_classifier", "int8")
    path = tmp_path_factory.mktemp("quantized") / "int8.keras"
    model.save(path)
    return path


def _edited(base, path, edit):
    """A copy of `base` whose config.json's backbone config `edit` changed in place (weights untouched)."""
    with zipfile.ZipFile(base) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    config = json.loads(members["config.json"])
    edit(config["config"]["backbone"]["config"])
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _policy_map(backbone_config):
    return backbone_config["dtype"]["config"]["policy_map"]


EDITS = {
    "num_layers_3": (lambda c: c.update(num_layers=3),
                     r"declares a BertClassifier with [\d,]+ parameters, but model\.weights\.h5 holds [\d,]+ values"),
    "float_layer": (lambda c: _policy_map(c).pop("encoder_block_0/feed_forward/up"),
                    r"declares a BertClassifier with [\d,]+ parameters, but model\.weights\.h5 holds [\d,]+ values"),
    "not_a_projection": (lambda c: _policy_map(c).update({"encoder_block_0/norm": _policy_map(c)["pooler/dense"]}),
                         r"`dtype` quantizes 'encoder_block_0/norm', which is not a Dense or EinsumDense"),
    "block_out_of_range": (lambda c: _policy_map(c).update(
        {"encoder_block_9/self_attention/query": _policy_map(c)["pooler/dense"]}), r"quantizes 'encoder_block_9/"),
    "gptq": (lambda c: _policy_map(c).update({"pooler/dense": "gptq/4/64_from_float32"}),
             r"quantization mode 'gptq' is not one kzoo loads; use int8, int4 or float8"),
}


@pytest.mark.backend("tensorflow", reason="checks on edited files, the same under every backend")
@pytest.mark.parametrize("case", sorted(EDITS))
def test_edited_quantized_files_are_refused(case, int8_file, tmp_path):
    edit, message = EDITS[case]
    path = _edited(int8_file, tmp_path / "edited.keras", edit)
    with pytest.raises(ModelFileError, match=message) as refused:
        saving.check_model_file(path)  # what load_model runs first: nothing is built
    assert "\n" not in str(refused.value)


# --- kzoo quantize --------------------------------------------------------------------------------------------------

WORDS = "the cat sat on mat a dog ran in park sun is warm today we read book".split()


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """A run directory of the tiny randomized GPT (vocabulary 61) with a 61-token WordPiece vocabulary."""
    root = tmp_path_factory.mktemp("gpt_run")
    (root / "tokenizer").mkdir()
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokens += [f"##{i}" for i in range(VOCABULARY - len(tokens))]
    (root / "tokenizer" / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    tiny_gpt(vocabulary_size=VOCABULARY).save(root / "model.keras")
    return root


def test_kzoo_quantize_writes_a_run_that_kzoo_generate_reads(gpt_run, tmp_path, capsys):
    from kzoo.generate import generate
    from kzoo.text import WordPieceTokenizer

    output = tmp_path / "int8"
    assert cli.main(["quantize", str(gpt_run), "--mode", "int8", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"GPTCausalLM {gpt_run} -> {output / 'model.keras'} (int8)" in printed
    assert "size: " in printed and "logits: max abs change " in printed
    assert sorted(os.listdir(output)) == ["model.keras", "tokenizer"]
    assert os.listdir(output / "tokenizer") == ["vocab.txt"]
    assert os.path.getsize(output / "model.keras") < os.path.getsize(gpt_run / "model.keras")
    quantized = saving.load_model(output / "model.keras")
    assert set(_modes(quantized).values()) == {"int8"}

    prompts = ["the cat", "a dog ran"]
    assert cli.main(["generate", str(output), "--prompt", prompts[0], "--prompt", prompts[1], "--max-new-tokens", "5",
                     "--json"]) == 0
    served = [row["output"] for row in json.loads(capsys.readouterr().out)]
    tokenizer = WordPieceTokenizer.from_files(str(gpt_run / "tokenizer" / "vocab.txt"))
    assert served == list(generate(quantized, prompts, tokenizer=tokenizer, max_new_tokens=5))


@pytest.mark.backend("tensorflow", reason="argument and file checks, the same under every backend")
def test_kzoo_quantize_refuses_bad_requests_in_one_line(gpt_run, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.keras").write_bytes(b"")
    cases = [
        (["--mode", "int3", "--output", str(tmp_path / "a")], "unknown --mode 'int3'; use one of int8, int4, float8"),
        (["--mode", "int8", "--block-size", "32", "--output", str(tmp_path / "a")],
         "--block-size applies to --mode int4 only"),
        (["--mode", "int8", "--output", str(tmp_path / "full")], "exists and is not empty; pass --overwrite"),
        (["--mode", "int8", "--output", str(gpt_run)], "--output is the source itself"),
    ]
    for arguments, message in cases:
        assert cli.main(["quantize", str(gpt_run), *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("kzoo quantize: ") and message in error and error.count("\n") == 1, error
    assert cli.main(["quantize", str(tmp_path / "missing"), "--mode", "int8", "--output", str(tmp_path / "b")]) == 2
    assert "missing does not exist" in capsys.readouterr().err

    # A quantized source: its projections are quantized already.
    assert cli.main(["quantize", str(gpt_run), "--mode", "int4", "--output", str(tmp_path / "int4")]) == 0
    capsys.readouterr()
    assert cli.main(["quantize", str(tmp_path / "int4"), "--mode", "int8", "--output", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert "the model is already quantized (int4); quantize its float model instead" in error
    assert error.count("\n") == 1 and not (tmp_path / "c").exists()
