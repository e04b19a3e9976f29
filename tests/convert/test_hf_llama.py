"""Llama, Mistral and Qwen2 checkpoints import into kzoo's GPT family and reproduce `transformers` (fp32, 1e-4).

The references are tiny random models of odd sizes (tests/convert/llama_fixtures.py): grouped-query attention,
untied and tied heads, Qwen2's query/key/value biases, Mistral's sliding window (shorter than the sequences)
and every `rope_scaling` kind. Only real (non-padding) positions are compared.
"""

import copy
import json
import os

import numpy as np
import pytest
import torch

from kzoo import cli
from kzoo.convert import hf_llama
from kzoo.convert.huggingface import from_huggingface
from kzoo.saving import load_model
from tests.convert import hf_fixtures, llama_fixtures
from tests.convert.test_hf_parity import _close
from tests.harness import to_numpy

TF_ONLY = pytest.mark.backend("tensorflow", reason="config.json and file checks do not depend on the backend")
# Under JAX two designs of one width keep the run short (JAX compiles every op per shape; the layers are checked
# under both backends by their own tests): biases + GQA + untied head, and dynamic NTK past its context.
JAX_DESIGNS = {"llama_biases", "llama_dynamic"}
TF_ONLY_DESIGN = pytest.mark.backend("tensorflow", reason="the converter maps tensors without Keras ops; the layers' "
                                                         "JAX arithmetic is checked by the llama_biases and "
                                                         "llama_dynamic designs")


def _design_params():
    return [pytest.param(name, marks=() if name in JAX_DESIGNS else TF_ONLY_DESIGN)
            for name in llama_fixtures.DESIGNS]


@pytest.mark.parametrize("design", _design_params())
def test_hidden_states_and_logits_match_transformers(tmp_path, design):
    directory, reference, vocab = llama_fixtures.make(design, tmp_path)
    imported = from_huggingface(directory, family="gpt")
    backbone = imported.backbone
    # 13 tokens: past the dynamic context (8) and Mistral's window (4).
    ids, mask = hf_fixtures.random_ids(3, 13, vocab, seed=7)
    with torch.no_grad():
        out = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                        output_hidden_states=True)
    inputs = {"token_ids": ids, "padding_mask": mask}
    hidden = _close(backbone(inputs)["sequence_output"], out.hidden_states[-1], mask)
    logits = _close(imported.model(inputs), out.logits, mask)
    print(f"{design}: max |hidden - hf| {hidden:.2e}, max |logits - hf| {logits:.2e}")
    config = reference.config
    assert backbone.num_key_value_heads == config.num_key_value_heads
    assert backbone.tie_word_embeddings == (design == "qwen2")


# --- config.json: both forms, and what kzoo refuses ----------------------------------------------------------------

LLAMA_5X = {  # a transformers 5.x config.json (rope_parameters)
    "model_type": "llama", "vocab_size": 97, "hidden_size": 36, "intermediate_size": 37, "num_hidden_layers": 2,
    "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 6, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "tie_word_embeddings": False, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0},
}


def _as_4x(config):
    """The same configuration as transformers 4.x writes it: `rope_theta` and `rope_scaling` at the top level
    (older files name the kind `type`)."""
    old = copy.deepcopy(config)
    parameters = old.pop("rope_parameters")
    old["rope_theta"] = parameters.pop("rope_theta")
    kind = parameters.pop("rope_type")
    old["rope_scaling"] = None if kind == "default" else {"type": kind, **parameters}
    return old


@TF_ONLY
def test_both_config_json_forms_give_the_same_kzoo_config():
    for kind in (None, *llama_fixtures.ROPE_SCALING):
        new = copy.deepcopy(LLAMA_5X)
        if kind is not None:
            new["rope_parameters"].update(llama_fixtures.ROPE_SCALING[kind])
        converted = hf_llama.config_from_hf(new)
        assert converted == hf_llama.config_from_hf(_as_4x(new)), kind
        assert converted["rotary_max_wavelength"] == 500.0 and converted["num_key_value_heads"] == 2
        assert (converted["norm_type"], converted["gated_feed_forward"], converted["activation"]) == ("rms", True,
                                                                                                     "silu")
        expected = None if kind is None else dict(llama_fixtures.ROPE_SCALING[kind])
        if kind == "dynamic":  # transformers measures dynamic NTK against max_position_embeddings
            expected["original_max_position_embeddings"] = 64
        assert converted["rotary_scaling"] == expected, kind


@TF_ONLY
def test_biases_windows_and_refusals_follow_config_json():
    def convert(**changes):
        return hf_llama.config_from_hf({**LLAMA_5X, **changes})

    llama = convert(attention_bias=True, mlp_bias=True)
    assert (llama["attention_bias"], llama["attention_output_bias"], llama["feed_forward_bias"]) == (True, True, True)
    qwen2 = convert(model_type="qwen2", sliding_window=32768, use_sliding_window=False, tie_word_embeddings=True)
    assert (qwen2["attention_bias"], qwen2["attention_output_bias"], qwen2["feed_forward_bias"]) == (True, False, False)
    assert qwen2["sliding_window"] is None and qwen2["tie_word_embeddings"]
    assert convert(model_type="qwen2", sliding_window=5, use_sliding_window=True, max_window_layers=0,
                   layer_types=None)["sliding_window"] == 5
    assert convert(model_type="mistral", sliding_window=7)["sliding_window"] == 7
    assert convert(model_type="mistral", sliding_window=None)["sliding_window"] is None
    assert convert(num_key_value_heads=None)["num_key_value_heads"] == 6
    with pytest.raises(ValueError, match=r"mixes sliding-window and full-attention layers"):
        convert(model_type="qwen2", sliding_window=5, use_sliding_window=True, max_window_layers=1)
    with pytest.raises(ValueError, match=r"head_dim 8 differs from hidden_size / num_attention_heads = 6"):
        convert(head_dim=8)
    with pytest.raises(ValueError, match=r"rope type 'longrope' is not supported"):
        convert(rope_parameters={"rope_type": "longrope", "rope_theta": 10.0, "factor": 2.0})
    with pytest.raises(ValueError, match=r"activation 'tanh' is not supported"):
        convert(hidden_act="tanh")


def _edit_config(directory, **changes):
    path = os.path.join(directory, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    with open(path, "w") as handle:
        json.dump({**config, **changes}, handle)


@TF_ONLY
def test_every_weight_is_mapped_and_inv_freq_buffers_are_ignored(tmp_path, capsys):
    """Old files carry `rotary_emb.inv_freq` buffers (ignored); any other unknown tensor is an error. A stored head
    equal to the embedding loads tied, a config that says untied without a stored head is refused; `kzoo convert`
    writes a .keras file that reloads with equal outputs."""
    import safetensors.numpy

    directory, reference = llama_fixtures.make_qwen2(tmp_path)
    path = os.path.join(directory, "model.safetensors")
    weights = safetensors.numpy.load_file(path)
    assert "lm_head.weight" not in weights  # transformers drops the tied head
    _edit_config(directory, tie_word_embeddings=False)
    with pytest.raises(ValueError, match=r"tie_word_embeddings: false but the file has no lm_head.weight"):
        from_huggingface(directory)
    _edit_config(directory, tie_word_embeddings=True)

    weights["lm_head.weight"] = weights["model.embed_tokens.weight"].copy()  # a tied head stored twice
    for index in range(2):
        weights[f"model.layers.{index}.self_attn.rotary_emb.inv_freq"] = np.ones(3, "float32")
    safetensors.numpy.save_file(weights, path)
    output = tmp_path / "qwen2.keras"
    assert cli.main(["convert", directory, "--output", str(output), "--family", "gpt"]) == 0
    assert "qwen2 checkpoint -> GPTCausalLM" in capsys.readouterr().out
    ids, mask = hf_fixtures.random_ids(2, 9, llama_fixtures.QWEN2_VOCAB, seed=3)
    inputs = {"token_ids": ids, "padding_mask": mask}
    with torch.no_grad():
        want = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).logits
    reloaded = load_model(output)
    assert reloaded.backbone.tie_word_embeddings
    _close(reloaded(inputs), want, mask)
    np.testing.assert_array_equal(to_numpy(reloaded(inputs)), to_numpy(from_huggingface(directory).model(inputs)))

    weights["model.layers.0.self_attn.k_norm.weight"] = np.ones(6, "float32")  # a part kzoo does not have
    safetensors.numpy.save_file(weights, path)
    with pytest.raises(ValueError, match=r"(?s)1 of \d+ tensors were neither converted.*self_attn\.k_norm"):
        from_huggingface(directory)
