"""Hugging Face Llama-family decoders (`llama`, `mistral`, `qwen2`) -> kzoo `GPTBackbone` / `GPTCausalLM`.

The three architectures are one design: rotary positions (GPT-NeoX half rotation), RMSNorm before each
sub-layer, a SwiGLU feed-forward `down(silu(gate(x)) * up(x))`, grouped-query attention (`num_key_value_heads`
key/value heads shared by groups of query heads) and an output head that is tied or not. They differ only in
configuration, which `config_from_hf` maps onto `GPTConfig` fields:

  * Llama: optional biases on the four attention projections (`attention_bias`) and on the feed-forward
    (`mlp_bias`); `rope_scaling` of kind linear, dynamic, llama3 or yarn.
  * Qwen2: biases on query, key and value only (none on the output projection); sliding-window attention only
    with `use_sliding_window`, on the layers `layer_types` (or `max_window_layers`) marks.
  * Mistral: no biases; `sliding_window` on every layer (None: full attention).

`config.json` comes in two forms: transformers 4.x writes `rope_theta` and `rope_scaling` at the top level,
transformers 5.x one `rope_parameters` dict holding `rope_theta` and the scaling keys. Both give the same kzoo
`rotary_max_wavelength` and `rotary_scaling` (Hugging Face's `rope_scaling` form, with `rope_type`).

Weight layout: torch `nn.Linear` `(out, in)`; query `(h * k, d)`, key/value `(h_kv * k, d)`, heads laid out
one after another, which `split_heads_in` splits into kzoo's `(d, h, k)` / `(d, h_kv, k)` kernels.
"""


from kzoo.convert import _assign
from kzoo.convert.hf_checkpoint import assign, linear_to_kernel, merge_heads_out, split_heads_in
from kzoo.models import GPTBackbone, GPTCausalLM

ROPE_TYPES = ("linear", "dynamic", "llama3", "yarn")
# Rope types whose formula reads the pre-training context length; filled from `max_position_embeddings` when
# the file leaves it out, as transformers does, so the kzoo layer needs nothing but its own dict.
ROPE_TYPES_WITH_CONTEXT = ("dynamic", "llama3", "yarn")


def _rope_parameters(hf, where):
    """`(rope_theta, scaling dict or None, partial_rotary_factor)` from either config.json form."""
    parameters = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    if parameters and any(isinstance(value, dict) for value in parameters.values()):
        raise ValueError(f"{where}: per-layer `rope_parameters` (one dict per layer type) are not supported by kzoo.")
    theta = parameters.pop("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = {**legacy, **parameters}
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    partial = float(scaling.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
    if rope_type == "default":
        return float(theta), None, partial
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"{where}: rope type {rope_type!r} is not supported; kzoo implements {list(ROPE_TYPES)}.")
    scaling = {"rope_type": rope_type, **scaling}
    if rope_type in ROPE_TYPES_WITH_CONTEXT:
        # transformers' dynamic NTK always measures against `max_position_embeddings`.
        if rope_type == "dynamic" or "original_max_position_embeddings" not in scaling:
            scaling["original_max_position_embeddings"] = int(hf["max_position_embeddings"])
    return float(theta), scaling, partial


def _sliding_window(hf, model_type, num_layers):
    """The attention window (keys per query, the query's own included) or None, the same on every layer."""
    if model_type == "llama":
        return None
    window = hf.get("sliding_window")
    if model_type == "qwen2" and not hf.get("use_sliding_window", False):
        window = None
    if window is None:
        return None
    layer_types = hf.get("layer_types")
    if layer_types is None and model_type == "qwen2":
        first = hf.get("max_window_layers", num_layers)
        layer_types = ["sliding_attention" if index >= first else "full_attention" for index in range(num_layers)]
    if layer_types is not None and len(set(layer_types)) > 1:
        raise ValueError(f"{model_type} checkpoint mixes sliding-window and full-attention layers ({layer_types}); "
                         "kzoo applies one sliding_window to every layer.")
    if layer_types is not None and layer_types[0] != "sliding_attention":
        return None
    return int(window)


def _tied(hf, reader, prefix):
    """Whether the LM head is the token embedding: no stored head, or (when config.json says tied) a stored copy.

    transformers 5 drops a tied `lm_head.weight` when saving; a head that differs from the embedding is untied
    whatever config.json says (as for T5 v1.1). A file whose config says untied but has no head is incomplete.
    """
    if not reader.has("lm_head.weight"):
        if hf.get("tie_word_embeddings") is False:
            raise ValueError("checkpoint config.json says tie_word_embeddings: false but the file has no "
                             "lm_head.weight; add the LM head weights or set tie_word_embeddings: true.")
        return True
    if not hf.get("tie_word_embeddings", False):
        return False  # untied by config, whatever the values: no need to compare two (V, d) tables
    return _assign.stored_head_is_tied(reader, "lm_head.weight", f"{prefix}embed_tokens.weight")


def config_from_hf(hf, reader=None, prefix="model."):
    """kzoo `GPTBackbone` arguments for a Llama, Mistral or Qwen2 `config.json`.

    Args:
        hf: the parsed config.json.
        reader: the `WeightReader`, which decides whether the head is tied (None: config.json alone).
        prefix: the checkpoint's name prefix of the decoder (`model.`, or "" for a bare `LlamaModel`).
    """
    model_type = hf.get("model_type", "llama")
    where = f"{model_type} checkpoint"
    hidden, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    if hidden % heads:
        raise ValueError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}.")
    head_dim = hf.get("head_dim")
    if head_dim is not None and int(head_dim) != hidden // heads:
        raise ValueError(f"{where}: head_dim {head_dim} differs from hidden_size / num_attention_heads = "
                         f"{hidden // heads}, which kzoo's GPT attention requires.")
    theta, scaling, partial = _rope_parameters(hf, where)
    rotary_dim = None if partial == 1.0 else int(hidden // heads * partial)
    if model_type == "qwen2":
        attention_bias, output_bias, mlp_bias = True, False, False
    elif model_type == "mistral":
        attention_bias = output_bias = mlp_bias = False
    else:
        attention_bias = output_bias = bool(hf.get("attention_bias", False))
        mlp_bias = bool(hf.get("mlp_bias", False))
    tied = bool(hf.get("tie_word_embeddings", False)) if reader is None else _tied(hf, reader, prefix)
    num_layers = int(hf["num_hidden_layers"])
    return dict(
        vocabulary_size=int(hf["vocab_size"]),
        num_layers=num_layers,
        num_heads=heads,
        num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
        hidden_dim=hidden,
        intermediate_dim=int(hf["intermediate_size"]),
        max_sequence_length=int(hf.get("max_position_embeddings", 2048)),
        position_embedding="rotary",
        rotary_max_wavelength=theta,
        rotary_dim=rotary_dim,
        rotary_scaling=scaling,
        sliding_window=_sliding_window(hf, model_type, num_layers),
        dropout=float(hf.get("attention_dropout", 0.0)),
        activation=_assign.activation(hf.get("hidden_act", "silu"), where),
        norm_type="rms",
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)),
        gated_feed_forward=True,
        attention_bias=attention_bias,
        attention_output_bias=output_bias,
        feed_forward_bias=mlp_bias,
        tie_word_embeddings=tied,
        initializer_range=float(hf.get("initializer_range", 0.02)),
    )


def _attention(layer, reader, name, config):
    """q/k/v/o projections of one layer; key/value have `num_key_value_heads` heads."""
    heads = {"query": config["num_heads"], "key": config["num_key_value_heads"], "value": config["num_key_value_heads"]}
    for role, short in (("query", "q"), ("key", "k"), ("value", "v")):
        projection = getattr(layer, f"{role}_dense")
        weight = f"{name}.{short}_proj.weight"
        assign(projection.kernel, split_heads_in(linear_to_kernel(reader.take(weight)), heads[role]), weight)
        if config["attention_bias"]:
            bias = f"{name}.{short}_proj.bias"
            assign(projection.bias, split_heads_in(reader.take(bias), heads[role]), bias)
    weight = f"{name}.o_proj.weight"
    assign(layer.output_dense.kernel, merge_heads_out(linear_to_kernel(reader.take(weight)), heads["query"]), weight)
    if config["attention_output_bias"]:
        assign(layer.output_dense.bias, reader.take(f"{name}.o_proj.bias"), f"{name}.o_proj.bias")


def load_backbone(reader, hf_config, dtype=None):
    """A `GPTBackbone` with every weight of the file, the untied LM head's table (`reverse_embeddings`) included.

    The two `(V, d)` tables are assigned first: the transient copies of the largest tensors then come while the
    process holds little else, not on top of the whole model at the end (for TinyLlama the head's 262 MB
    transposition was the import's peak).
    """
    p = "model." if reader.has("model.embed_tokens.weight") else ""
    config = config_from_hf(hf_config, reader, p)
    backbone = GPTBackbone(**config, dtype=dtype)
    _assign.embedding(backbone.token_embedding.embeddings, reader, f"{p}embed_tokens.weight")
    if backbone.tie_word_embeddings:
        _assign.tied_copy(reader, "lm_head.weight", backbone.token_embedding.embeddings, "the token embedding")
    else:  # stored (V, d); kzoo's reverse projection is (d, V)
        assign(backbone.token_embedding.reverse_embeddings, reader.take("lm_head.weight").T, "lm_head.weight")
    for index, block in enumerate(backbone.decoder_blocks):
        layer = f"{p}layers.{index}"
        _attention(block.self_attention, reader, f"{layer}.self_attn", config)
        _assign.norm(block.self_attention_norm, reader, f"{layer}.input_layernorm")
        mlp = f"{layer}.mlp"
        _assign.feed_forward(block.feed_forward, reader, f"{mlp}.up_proj", f"{mlp}.down_proj", gate=f"{mlp}.gate_proj")
        _assign.norm(block.feed_forward_norm, reader, f"{layer}.post_attention_layernorm")
    _assign.norm(backbone.final_norm, reader, f"{p}norm")
    # Rotary frequency buffers that older files carry: kzoo computes them from the config.
    reader.ignore(lambda name: name.endswith("rotary_emb.inv_freq"))
    return backbone


def load_model(reader, hf_config, dtype=None):
    """A `GPTCausalLM`; its head is the file's `lm_head.weight` when untied, else the token embedding."""
    return GPTCausalLM(load_backbone(reader, hf_config, dtype))
