"""Marian (OPUS-MT), mBART and mT5 checkpoints imported from Hugging Face reproduce `transformers` (fp32, atol 1e-4).

References are random tiny models of odd sizes (tests/convert/seq2seq_fixtures.py); only
real (non-padding) positions are compared. Marian and mBART carry a non-zero
`final_logits_bias`, so the logits check fails if kzoo drops it.
"""

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from kzoo import layers, models
from kzoo.convert import hf_seq2seq
from kzoo.convert.huggingface import from_huggingface
from kzoo.models.backbone import count_serialized_parameters
from tests.convert import hf_fixtures, seq2seq_fixtures
from tests.convert.test_hf_parity import _close
from tests.harness import assert_keras_file_round_trip, to_numpy

TF_ONLY = dict(reason="file and mapping checks; the numerics run under both backends in test_variant_parity")
CASES = {  # design -> (fixture, pad id)
    "marian": (seq2seq_fixtures.make_marian, seq2seq_fixtures.MARIAN_PAD),
    "mbart": (seq2seq_fixtures.make_mbart, 1),
    "mt5": (seq2seq_fixtures.make_mt5, 0),
}


def _batch(vocab, pad):
    source, source_mask = hf_fixtures.random_ids(3, 12, vocab, seed=3, pad_id=pad)
    target, target_mask = hf_fixtures.random_ids(3, 7, vocab, seed=4, pad_id=pad)
    return {"encoder_token_ids": source, "encoder_padding_mask": source_mask,
            "decoder_token_ids": target, "decoder_padding_mask": target_mask}


def _reference(reference, inputs):
    with torch.no_grad():
        return reference(
            input_ids=torch.tensor(inputs["encoder_token_ids"], dtype=torch.long),
            attention_mask=torch.tensor(inputs["encoder_padding_mask"]),
            decoder_input_ids=torch.tensor(inputs["decoder_token_ids"], dtype=torch.long),
            decoder_attention_mask=torch.tensor(inputs["decoder_padding_mask"]), output_hidden_states=True,
        )


# Marian's new parts (the stored split sinusoidal table, the logits bias) run under both backends; mBART and mT5
# reuse layers the JAX run already checks through BART and T5 v1.1 (test_hf_parity), so they run once, to keep
# CI's JAX run short.
REUSED_LAYERS = pytest.mark.backend("tensorflow", reason="its layers run under JAX in the BART / T5 v1.1 parity "
                                                         "tests; the mapping is backend-free")


@pytest.mark.parametrize("design", ["marian", *(pytest.param(name, marks=REUSED_LAYERS) for name in ("mbart", "mt5"))])
def test_variant_parity(tmp_path, design):
    make, pad = CASES[design]
    directory, reference = make(tmp_path)
    imported = from_huggingface(directory, family="seq2seq")
    assert imported.model.logits_bias == (design != "mt5")
    inputs = _batch(imported.hf_config["vocab_size"], pad)
    out = _reference(reference, inputs)
    features = imported.backbone(inputs)
    differences = [
        _close(features["encoder_sequence_output"], out.encoder_last_hidden_state, inputs["encoder_padding_mask"]),
        _close(features["decoder_sequence_output"], out.decoder_hidden_states[-1], inputs["decoder_padding_mask"]),
        _close(imported.model(inputs), out.logits, inputs["decoder_padding_mask"]),
    ]
    print(f"{design} max abs differences (encoder, decoder, logits): {differences}")


@pytest.mark.backend("tensorflow", **TF_ONLY)
def test_marian_position_tables_stored_in_a_file_must_equal_the_formula(tmp_path):
    """transformers 5 no longer saves Marian's tables; older files hold them. Equal ones load, others are refused."""
    directory, reference = seq2seq_fixtures.make_marian(tmp_path, logits_bias=False)
    weights = load_file(f"{directory}/model.safetensors")
    assert "model.encoder.embed_positions.weight" not in weights
    tables = {f"model.{side}.embed_positions.weight": getattr(reference.model, side).embed_positions.weight.numpy()
              for side in ("encoder", "decoder")}
    save_file({**weights, **tables}, f"{directory}/model.safetensors", metadata={"format": "pt"})
    imported = from_huggingface(directory)
    assert not imported.model.logits_bias  # an all-zero final_logits_bias adds nothing
    table = to_numpy(imported.backbone.decoder_position.table)
    np.testing.assert_array_equal(table, tables["model.decoder.embed_positions.weight"])
    assert not imported.backbone.decoder_position.trainable_weights  # frozen, as in transformers

    tables["model.decoder.embed_positions.weight"][5, 3] += 1e-3
    save_file({**weights, **tables}, f"{directory}/model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"'model.decoder.embed_positions.weight' differs from the split sinusoidal "
                                         r"formula \(max abs difference 1.00e-03\)"):
        from_huggingface(directory)


@pytest.mark.backend("tensorflow", **TF_ONLY)
def test_bart_with_a_non_zero_final_logits_bias(tmp_path):
    directory, reference = hf_fixtures.make_bart(tmp_path)
    weights = load_file(f"{directory}/model.safetensors")
    bias = np.random.default_rng(0).normal(0, 0.2, weights["final_logits_bias"].shape).astype("float32")
    save_file({**weights, "final_logits_bias": bias}, f"{directory}/model.safetensors", metadata={"format": "pt"})
    with torch.no_grad():
        reference.final_logits_bias.copy_(torch.tensor(bias))
    imported = from_huggingface(directory)
    inputs = _batch(imported.hf_config["vocab_size"], 1)
    _close(imported.model(inputs), _reference(reference, inputs).logits, inputs["decoder_padding_mask"])


@pytest.mark.backend("tensorflow", **TF_ONLY)
def test_marian_with_separate_vocabularies_is_refused():
    config = {"vocab_size": 50, "decoder_vocab_size": 60, "share_encoder_decoder_embeddings": False,
              "encoder_attention_heads": 2, "d_model": 8, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16}
    with pytest.raises(ValueError, match="separate encoder and decoder vocabularies"):
        hf_seq2seq.marian_config_from_hf(config)


def test_split_sinusoidal_layout_matches_transformers_marian():
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    want = MarianSinusoidalPositionalEmbedding(30, 22).create_weight().numpy()
    inputs = np.zeros((2, 9, 22), "float32")
    computed = layers.SinusoidalPositionEmbedding(30, layout="split")(inputs, start_index=21)
    stored = layers.SinusoidalPositionEmbedding(30, layout="split", stored=True)
    np.testing.assert_allclose(to_numpy(computed)[1], want[21:30], atol=1e-5, rtol=0)  # float32 angles
    np.testing.assert_array_equal(to_numpy(stored(inputs, start_index=21))[0], want[21:30])
    assert [w.path for w in stored.non_trainable_weights] == [f"{stored.name}/table"] and not stored.trainable_weights
    interleaved = to_numpy(layers.SinusoidalPositionEmbedding(30)(inputs))[0]  # the default is unchanged
    np.testing.assert_allclose(interleaved[:, 0::2], want[:9, :11], atol=1e-5, rtol=0)
    np.testing.assert_allclose(interleaved[:, 1::2], want[:9, 11:], atol=1e-5, rtol=0)


@pytest.mark.backend("tensorflow", **TF_ONLY)
def test_shrunken_opus_mt_config_counts_and_round_trips(tmp_path):
    """The Marian preset's design, shrunk: the analytic count equals the built task (tables and logits bias
    included) and a `.keras` file reloads it exactly."""
    config = models.get_preset("opus_mt_en_de").config.replace(
        vocabulary_size=53, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=24, max_sequence_length=20)
    backbone = models.Seq2SeqBackbone(**config.to_dict())
    assert backbone.count_params() == config.parameter_count()
    model = models.Seq2SeqLM(backbone, logits_bias=True)
    model.logits_bias_layer.bias.assign(np.linspace(-1, 1, 53).astype("float32"))
    serialized = keras.saving.serialize_keras_object(model)
    assert count_serialized_parameters(serialized) == model.count_params() == config.parameter_count() + 53
    assert_keras_file_round_trip(model, _batch(53, 0), tmp_path)
