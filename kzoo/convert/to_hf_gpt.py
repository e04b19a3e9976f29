"""kzoo `GPTBackbone` / `GPTCausalLM` -> Hugging Face GPT-2 or a Llama-style decoder: the inverse of `hf_gpt2`
and `hf_llama`.

The architecture follows from the backbone's options:

| kzoo options | model_type (causal LM class) |
|---|---|
| learned positions, LayerNorm, plain feed-forward, every bias, tied output | `gpt2` (`GPT2LMHeadModel`) |
| rotary, RMSNorm, gated silu, q/k/v and output biases equal, no sliding window | `llama` (`LlamaForCausalLM`) |
| the same with q/k/v biases but no output or feed-forward bias | `qwen2` (`Qwen2ForCausalLM`) |
| the same with no bias and a `sliding_window` | `mistral` (`MistralForCausalLM`) |

Anything else (GPT-2 with rotary positions, a padded vocabulary, partial rotary, ...) is refused with the option
named. A `GPTBackbone` alone is written as the base model (`GPT2Model`, `LlamaModel`, ...). A tied output
projection is not stored (`save_pretrained` writes it once, as the word embeddings).
"""

import numpy as np

from kzoo.convert import _to_hf
from kzoo.convert._to_hf import ExportRefused, FamilyExport, Tensors

# GPTConfig fields this exporter maps; any other field must keep its default.
KNOWN = {
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length",
    "position_embedding", "rotary_max_wavelength", "rotary_dim", "dropout", "activation", "norm_epsilon",
    "initializer_range", "pad_vocabulary_to_multiple_of", "num_key_value_heads", "norm_type", "gated_feed_forward",
    "attention_bias", "attention_output_bias", "feed_forward_bias", "tie_word_embeddings", "rotary_scaling",
    "sliding_window",
}
GPT2 = {  # the options GPT-2's architecture fixes
    "pad_vocabulary_to_multiple_of": 1, "num_key_value_heads": None, "norm_type": "layer",
    "gated_feed_forward": False, "attention_bias": True, "attention_output_bias": True, "feed_forward_bias": True,
    "tie_word_embeddings": True, "rotary_scaling": None, "sliding_window": None,
}
LLAMA_STYLE = {"pad_vocabulary_to_multiple_of": 1, "norm_type": "rms", "gated_feed_forward": True, "activation": "silu"}
BASE_CLASSES = {"gpt2": "GPT2Model", "llama": "LlamaModel", "qwen2": "Qwen2Model", "mistral": "MistralModel"}
CAUSAL_LM_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                     "mistral": "MistralForCausalLM"}


def export(model):
    """`FamilyExport` of a `GPTBackbone` or `GPTCausalLM`."""
    from kzoo.models import GPTBackbone, GPTCausalLM

    backbone = model if isinstance(model, GPTBackbone) else model.backbone
    what = type(model).__name__
    found = _to_hf.options(backbone, GPT2)
    _to_hf.require_defaults(found, KNOWN, _to_hf.defaults(backbone), what)
    notes = []
    head = isinstance(model, GPTCausalLM)
    if not head and not isinstance(model, GPTBackbone):
        notes.append(f"{what} has no matching transformers head; only its backbone is written.")
    tensors = Tensors()
    if found["position_embedding"] == "learned":
        _to_hf.require(found, GPT2, "GPT-2", what)
        model_type = "gpt2"
        config = _gpt2(tensors, backbone, found, "transformer." if head else "")
    else:
        if found["norm_type"] == "layer" and not found["gated_feed_forward"]:
            raise ExportRefused(
                f"{what}: position_embedding='rotary' in a GPT-2-style block has no Hugging Face equivalent (GPT-2 "
                "has learned positions; Llama-style decoders need norm_type='rms' and a gated silu feed-forward)."
            )
        model_type = _llama_type(found, what)
        config = _llama(tensors, backbone, found, model_type, "model." if head else "", what)
        if head and not found["tie_word_embeddings"]:
            # kzoo's untied output projection is (d, V); transformers' lm_head is an nn.Linear (V, d).
            tensors.put("lm_head.weight", _to_hf.value(backbone.token_embedding.reverse_embeddings).T)
    architecture = CAUSAL_LM_CLASSES[model_type] if head else BASE_CLASSES[model_type]
    return FamilyExport(architecture, model_type, config, tensors, notes,
                        {"pad": "pad_token_id", "bos": "bos_token_id", "eos": "eos_token_id"})


def _llama_type(found, what):
    """Which Llama-family architecture holds these options (the biases and the sliding window decide)."""
    _to_hf.require(found, LLAMA_STYLE, "Llama-style", what)
    head_dim = found["hidden_dim"] // found["num_heads"]
    if found["rotary_dim"] not in (None, head_dim):
        raise ExportRefused(f"{what}: rotary_dim={found['rotary_dim']} rotates part of each head; Llama-style "
                            f"architectures rotate the whole head (rotary_dim None or {head_dim}).")
    scaling = found["rotary_scaling"] or {}
    context = scaling.get("original_max_position_embeddings", found["max_sequence_length"])
    if scaling.get("rope_type") == "dynamic" and context != found["max_sequence_length"]:
        raise ExportRefused(f"{what}: dynamic rotary_scaling measured against {context} positions; transformers "
                            f"measures it against max_position_embeddings (max_sequence_length="
                            f"{found['max_sequence_length']}), so the two must be equal.")
    qkv, output = found["attention_bias"], found["attention_output_bias"]
    if found["sliding_window"] is not None:
        _to_hf.require(found, {"attention_bias": False, "attention_output_bias": False, "feed_forward_bias": False},
                       "Mistral (sliding-window)", what)
        return "mistral"
    if qkv and not output:
        _to_hf.require(found, {"feed_forward_bias": False}, "Qwen2 (q/k/v biases only)", what)
        return "qwen2"
    if qkv != output:
        raise ExportRefused(f"{what}: attention_output_bias={output!r} with attention_bias={qkv!r} has no "
                            "Llama-style equivalent (Llama: both equal; Qwen2: q/k/v biases only).")
    return "llama"


def _gpt2(tensors, backbone, found, p):
    _to_hf.token_table(tensors, backbone.token_embedding, f"{p}wte.weight", "GPT-2")
    tensors.put(f"{p}wpe.weight", _to_hf.value(backbone.position_embedding_layer.position_embeddings))
    for index, block in enumerate(backbone.decoder_blocks):
        layer = f"{p}h.{index}"
        attention = block.self_attention
        # GPT-2's Conv1D fuses query, key and value into one (d, 3d) weight stored (in, out).
        kernels = [_to_hf.value(getattr(attention, f"{role}_dense").kernel) for role in ("query", "key", "value")]
        biases = [_to_hf.value(getattr(attention, f"{role}_dense").bias) for role in ("query", "key", "value")]
        tensors.put(f"{layer}.attn.c_attn.weight", np.concatenate([k.reshape(k.shape[0], -1) for k in kernels], 1))
        tensors.put(f"{layer}.attn.c_attn.bias", np.concatenate([b.reshape(-1) for b in biases]))
        output = _to_hf.value(attention.output_dense.kernel)  # (h, k, d)
        tensors.put(f"{layer}.attn.c_proj.weight", output.reshape(-1, output.shape[-1]))
        tensors.put(f"{layer}.attn.c_proj.bias", _to_hf.value(attention.output_dense.bias))
        _to_hf.norm(tensors, block.self_attention_norm, f"{layer}.ln_1")
        _to_hf.feed_forward(tensors, block.feed_forward, f"{layer}.mlp.c_fc", f"{layer}.mlp.c_proj",
                            transposed=False)
        _to_hf.norm(tensors, block.feed_forward_norm, f"{layer}.ln_2")
    _to_hf.norm(tensors, backbone.final_norm, f"{p}ln_f")
    dropout = found["dropout"]
    return {
        "vocab_size": found["vocabulary_size"],
        "n_positions": found["max_sequence_length"],
        "n_embd": found["hidden_dim"],
        "n_layer": found["num_layers"],
        "n_head": found["num_heads"],
        "n_inner": found["intermediate_dim"],
        "activation_function": _to_hf.activation(found["activation"], "GPT-2"),
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "layer_norm_epsilon": found["norm_epsilon"],
        "initializer_range": found["initializer_range"],
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
    }


def _llama(tensors, backbone, found, model_type, p, what):
    _to_hf.token_table(tensors, backbone.token_embedding, f"{p}embed_tokens.weight", what)
    for index, block in enumerate(backbone.decoder_blocks):
        layer = f"{p}layers.{index}"
        _to_hf.attention(tensors, block.self_attention, {
            role: f"{layer}.self_attn.{short}_proj" for role, short in
            (("query", "q"), ("key", "k"), ("value", "v"), ("output", "o"))
        }, use_bias=found["attention_bias"], output_bias=found["attention_output_bias"])
        _to_hf.norm(tensors, block.self_attention_norm, f"{layer}.input_layernorm")
        _to_hf.feed_forward(tensors, block.feed_forward, f"{layer}.mlp.up_proj", f"{layer}.mlp.down_proj",
                            gate=f"{layer}.mlp.gate_proj")
        _to_hf.norm(tensors, block.feed_forward_norm, f"{layer}.post_attention_layernorm")
    _to_hf.norm(tensors, backbone.final_norm, f"{p}norm")
    heads = found["num_heads"]
    theta = float(found["rotary_max_wavelength"])
    scaling = dict(found["rotary_scaling"]) if found["rotary_scaling"] else None
    if scaling and "rope_type" not in scaling:  # the older spelling {"type": ...}
        scaling["rope_type"] = scaling.pop("type")
    config = {
        "vocab_size": found["vocabulary_size"],
        "hidden_size": found["hidden_dim"],
        "intermediate_size": found["intermediate_dim"],
        "num_hidden_layers": found["num_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": found["num_key_value_heads"] or heads,
        "head_dim": found["hidden_dim"] // heads,
        "hidden_act": "silu",
        "max_position_embeddings": found["max_sequence_length"],
        "rms_norm_eps": found["norm_epsilon"],
        "initializer_range": found["initializer_range"],
        "attention_dropout": found["dropout"],
        # transformers 5 reads `rope_parameters`; transformers 4 (and many Hub files) `rope_theta` + `rope_scaling`.
        "rope_parameters": {"rope_type": "default", **(scaling or {}), "rope_theta": theta},
        "rope_theta": theta,
        "rope_scaling": scaling,
        "tie_word_embeddings": bool(found["tie_word_embeddings"]),
    }
    if model_type == "llama":
        config.update(attention_bias=bool(found["attention_bias"]),
                      mlp_bias=bool(found["feed_forward_bias"]))
    elif model_type == "qwen2":
        config.update(use_sliding_window=False, sliding_window=None)
    else:
        config.update(sliding_window=found["sliding_window"])
    return config
