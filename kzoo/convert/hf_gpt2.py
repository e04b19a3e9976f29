"""Hugging Face GPT-2 (`model_type: gpt2`) -> kzoo `GPTBackbone` / `GPTCausalLM`.

GPT-2 stores `Conv1D` weights as `(in, out)` (not transposed) and fuses query, key
and value into one `c_attn` projection of width `3 * d`.
"""

import numpy as np

from kzoo.convert import _assign
from kzoo.convert.hf_checkpoint import assign, merge_heads_out, split_heads_in
from kzoo.models import GPTBackbone, GPTCausalLM


def config_from_hf(hf):
    hidden = hf["n_embd"]
    return dict(
        vocabulary_size=hf["vocab_size"],
        num_layers=hf["n_layer"],
        num_heads=hf["n_head"],
        hidden_dim=hidden,
        intermediate_dim=hf.get("n_inner") or 4 * hidden,
        max_sequence_length=hf.get("n_positions", 1024),
        position_embedding="learned",
        dropout=hf.get("resid_pdrop", 0.1),
        activation=_assign.activation(hf.get("activation_function", "gelu_new"), "GPT-2 checkpoint"),
        norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        initializer_range=hf.get("initializer_range", 0.02),
    )


def _check_supported(hf):
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise ValueError(f"GPT-2 checkpoint sets `{flag}`, which kzoo does not implement.")
    if hf.get("scale_attn_weights") is False:
        raise ValueError("GPT-2 checkpoint sets `scale_attn_weights: false`, which kzoo does not implement.")


def load_backbone(reader, hf_config, dtype=None):
    _check_supported(hf_config)
    backbone = GPTBackbone(**config_from_hf(hf_config), dtype=dtype)
    p = "transformer." if reader.has("transformer.wte.weight") else ""
    _assign.embedding(backbone.token_embedding.embeddings, reader, f"{p}wte.weight")
    _assign.embedding(backbone.position_embedding_layer.position_embeddings, reader, f"{p}wpe.weight")
    for index, block in enumerate(backbone.decoder_blocks):
        layer = f"{p}h.{index}"
        attention = block.self_attention
        fused = reader.take(f"{layer}.attn.c_attn.weight")  # (d, 3d)
        fused_bias = reader.take(f"{layer}.attn.c_attn.bias")  # (3d,)
        for role, kernel, bias in zip(
            ("query", "key", "value"), np.split(fused, 3, axis=1), np.split(fused_bias, 3), strict=True
        ):
            name = f"{layer}.attn.c_attn ({role})"
            projection = getattr(attention, f"{role}_dense")
            assign(projection.kernel, split_heads_in(kernel, attention.num_heads), name)
            assign(projection.bias, bias.reshape(attention.num_heads, -1), name)
        projection = reader.take(f"{layer}.attn.c_proj.weight")  # (d, d) in -> out
        assign(attention.output_dense.kernel, merge_heads_out(projection, attention.num_heads), f"{layer}.attn.c_proj")
        assign(attention.output_dense.bias, reader.take(f"{layer}.attn.c_proj.bias"), f"{layer}.attn.c_proj.bias")
        _assign.norm(block.self_attention_norm, reader, f"{layer}.ln_1")
        _assign.feed_forward(
            block.feed_forward, reader, f"{layer}.mlp.c_fc", f"{layer}.mlp.c_proj", transposed=False
        )
        _assign.norm(block.feed_forward_norm, reader, f"{layer}.ln_2")
    _assign.norm(backbone.final_norm, reader, f"{p}ln_f")
    # Causal-mask buffers that older files carry; they hold no learned values.
    reader.ignore(lambda name: name.endswith((".attn.bias", ".attn.masked_bias")))
    return backbone


def load_model(reader, hf_config, dtype=None):
    """A `GPTCausalLM` (the LM head is tied to the token embedding)."""
    backbone = load_backbone(reader, hf_config, dtype)
    _assign.tied_copy(reader, "lm_head.weight", backbone.token_embedding.embeddings, "the word embeddings")
    return GPTCausalLM(backbone)
