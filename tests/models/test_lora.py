"""LoRA on kzoo backbones through Keras' `enable_lora`, and Keras' `quantize` reaching kzoo's projections."""

import keras
import numpy as np
import pytest

from kzoo import models, saving
from kzoo.models import lora
from kzoo.models.quantization import quantize_model
from tests.harness import to_numpy

VOCABULARY = 61
IDS = np.array([[5, 6, 7, 8, 9, 0], [10, 11, 12, 13, 14, 15]])


def _inputs(family):
    mask = IDS > 0
    if family == "gpt":
        return {"token_ids": IDS, "padding_mask": mask}
    if family == "bert":
        return {"token_ids": IDS, "segment_ids": np.zeros_like(IDS), "padding_mask": mask}
    return {"encoder_token_ids": IDS, "encoder_padding_mask": mask, "decoder_token_ids": IDS[:, :4],
            "decoder_padding_mask": mask[:, :4]}


def _model(family, seed=0):
    keras.utils.set_random_seed(seed)
    if family == "gpt":
        return models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=VOCABULARY, dropout=0.0))
    if family == "bert":
        return models.BertClassifier(models.from_preset("bert_test", vocabulary_size=VOCABULARY, dropout=0.0),
                                     num_classes=3, dropout=0.0)
    return models.Seq2SeqLM(models.from_preset("t5_test", vocabulary_size=VOCABULARY, dropout=0.0))


@pytest.mark.parametrize("family", ["gpt", "bert", "seq2seq"])
def test_fresh_adapters_keep_the_base_outputs_and_only_they_train(family):
    model = _model(family)
    inputs = _inputs(family)
    before = to_numpy(model(inputs))
    layers = model.backbone.enable_lora(4, alpha=8, targets=("query", "value", "up"))
    # B starts at zero, so the adapted model computes the base model. Not bit for bit: an adapted projection runs
    # Keras' own einsum and the base kzoo's 2-D matmul form (`kzoo.layers.attention.project`), whose float32
    # rounding differs by an ulp on some CPUs (seen on an AMD EPYC).
    assert all(not to_numpy(v).any() for v in model.weights if v.path.endswith("lora_kernel_b"))
    np.testing.assert_allclose(to_numpy(model(inputs)), before, rtol=1e-5, atol=1e-6)
    names = [layer.name for layer in layers]
    attention_layers = {"gpt": 2, "bert": 2, "seq2seq": 6}[family]  # seq2seq decoders: self and cross attention
    blocks = {"gpt": 2, "bert": 2, "seq2seq": 4}[family]
    assert (names.count("query"), names.count("value"), names.count("up")) == (attention_layers,) * 2 + (blocks,)
    backbone_trainable = [v.path.rsplit("/", 1)[-1] for v in model.backbone.trainable_variables]
    assert set(backbone_trainable) == {"lora_kernel_a", "lora_kernel_b"}
    head = [v for v in model.trainable_variables if "lora_kernel" not in v.path]
    assert [v.path for v in head] == (["classification_head/logits/kernel", "classification_head/logits/bias"]
                                      if family == "bert" else [])  # a classifier's own head learns its labels
    assert lora.count_lora_parameters(model) == sum(int(np.prod(v.shape)) for v in model.trainable_variables) - sum(
        int(np.prod(v.shape)) for v in head)
    assert lora.lora_settings(model) == {"rank": 4, "alpha": 8.0, "targets": ["query", "value", "up"]}


def test_a_training_step_moves_only_the_adapters_and_saving_merges_them(tmp_path):
    model = _model("gpt")
    inputs = _inputs("gpt")
    model.backbone.enable_lora(2)
    frozen = {v.path: to_numpy(v).copy() for v in model.weights if "lora_kernel" not in v.path}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))  # the task's own cross-entropy
    model.fit(inputs, np.roll(IDS, -1, axis=1), epochs=1, batch_size=2, verbose=0)
    for variable in model.weights:
        if "lora_kernel" not in variable.path:
            np.testing.assert_array_equal(to_numpy(variable), frozen[variable.path], err_msg=variable.path)
    b = [v for v in model.weights if v.path.endswith("lora_kernel_b")]
    assert any(np.abs(to_numpy(v)).max() > 0 for v in b)
    trained = to_numpy(model(inputs))
    assert not np.allclose(trained, to_numpy(_model("gpt")(inputs)))

    # model.save writes each adapted kernel merged (W + alpha/r A B): the file is a plain model with the same outputs.
    model.save(tmp_path / "merged.keras")
    merged = saving.load_model(str(tmp_path / "merged.keras"), compile=False)
    assert lora.lora_settings(merged) is None
    np.testing.assert_allclose(to_numpy(merged(inputs)), trained, atol=1e-5)

    # The adapters alone go onto a fresh copy of the base model.
    lora.save_adapters(model, tmp_path / "adapters.npz")
    fresh = _model("gpt")
    assert lora.load_adapters(fresh, tmp_path / "adapters.npz") == {"rank": 2, "alpha": 2.0,
                                                                     "targets": ["query", "value"]}
    np.testing.assert_array_equal(to_numpy(fresh(inputs)), trained)
    with pytest.raises(ValueError, match="does not fit this model"):
        lora.load_adapters(_model("bert"), tmp_path / "adapters.npz")


def test_bad_settings_are_refused():
    backbone = _model("gpt").backbone
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        backbone.enable_lora(0)
    with pytest.raises(ValueError, match="targets must name some of query, key, value, output, up, gate, down"):
        backbone.enable_lora(4, targets=("q_proj",))
    with pytest.raises(ValueError, match="has no 'gate' projection"):
        backbone.enable_lora(4, targets=("gate",))
    backbone.enable_lora(4)
    with pytest.raises(ValueError, match="already enabled"):
        backbone.enable_lora(4)
    with pytest.raises(ValueError, match="has no adapters"):
        lora.save_adapters(_model("gpt"), "unused.npz")


@pytest.mark.slow
def test_gpt2_small_rank_8_trains_keras_adapter_shapes():
    """Keras' EinsumDense adapters on a `(d, h, k)` kernel are `A (d, h, r)` and `B (r, k)` (as keras-hub's): for
    GPT-2 small's query and value at rank 8, (768 * 12 * 8 + 8 * 64) * 2 * 12 layers."""
    model = models.GPTCausalLM(models.from_preset("gpt2_small", dropout=0.0))
    model.backbone.enable_lora(8)
    assert lora.count_lora_parameters(model) == (768 * 12 * 8 + 8 * 64) * 2 * 12 == 1_781_760
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 1_781_760


@pytest.mark.parametrize("family", ["gpt", "bert", "seq2seq"])
def test_int8_quantization_reaches_every_projection(family):
    """Keras' `quantize("int8")` (per-channel int8 kernels, through `quantize_model`) on every kzoo projection,
    close to the float model."""
    model = _model(family)
    inputs = _inputs(family)
    before = to_numpy(model(inputs))
    quantize_model(model, "int8")
    projections = [layer for layer in model._flatten_layers()
                   if layer.name in ("query", "key", "value", "output", "up", "down")]
    assert projections and all(layer.quantization_mode == "int8" for layer in projections)
    after = to_numpy(model(inputs))
    assert 0 < np.abs(after - before).max() < 0.01 * max(1.0, np.abs(before).max())


@pytest.mark.slow
def test_bert_base_classifier_rank_8_trains_the_adapters_and_its_head():
    """BERT-base: query and value `(768, 12, 64)` kernels in 12 layers, adapters `A (768, 12, 8)`, `B (8, 64)`;
    the classifier's own head (768 -> 2 logits, outside the backbone) trains too."""
    model = models.BertClassifier(models.from_preset("bert_base", dropout=0.0), num_classes=2, dropout=0.0)
    model.backbone.enable_lora(8)
    adapters = (768 * 12 * 8 + 8 * 64) * 2 * 12
    assert lora.count_lora_parameters(model) == adapters == 1_781_760
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == adapters + 768 * 2 + 2 == 1_783_298


@pytest.mark.slow
def test_t5_small_rank_8_adapts_self_and_cross_attention():
    """T5-small: 8 heads of 64 over 512; query and value of 6 encoder self-attentions and 6 decoder self- and 6
    cross-attentions (18 attention layers), adapters `A (512, 8, 8)`, `B (8, 64)`; the tied head adds nothing."""
    model = models.Seq2SeqLM(models.from_preset("t5_small", dropout=0.0))
    model.backbone.enable_lora(8)
    assert lora.count_lora_parameters(model) == (512 * 8 * 8 + 8 * 64) * 2 * 18 == 1_198_080
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 1_198_080
