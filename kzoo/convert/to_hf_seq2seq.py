"""kzoo `Seq2SeqBackbone` / `Seq2SeqLM` -> Hugging Face T5 (`t5`), BART (`bart`), mBART (`mbart`) or Marian
(`marian`): the inverse of `hf_seq2seq`.

The design switches (see `Seq2SeqConfig`) pick the architecture: relative positions with pre-RMSNorm blocks and no
biases are T5 (v1.0: relu, tied and scaled output; v1.1: gated gelu, untied); learned positions with offset 2,
LayerNorm blocks, biases and an embedding norm are BART (post-norm) or mBART (pre-norm, with a final norm per
stack); split sinusoidal positions, post-norm and no embedding norm are Marian. Anything else is refused with the
option named. `Seq2SeqLM` -> `*ForConditionalGeneration` / `MarianMTModel`; a backbone alone -> the base model.
A tied LM head is not stored, as `save_pretrained` writes it; the BART family's `final_logits_bias` buffer is (the
`Seq2SeqLM`'s logits bias, or zeros when it has none, as transformers stores it). Marian's sinusoidal tables are
not stored (transformers 5 computes them).
"""

import numpy as np

from kzoo.convert import _to_hf
from kzoo.convert._to_hf import ExportRefused, FamilyExport, Tensors

# Seq2SeqConfig fields this exporter maps or knows to be irrelevant to the chosen architecture.
KNOWN = {
    "vocabulary_size", "num_encoder_layers", "num_decoder_layers", "num_heads", "hidden_dim", "intermediate_dim",
    "key_dim", "max_sequence_length", "position_embedding", "position_offset", "sinusoidal_layout",
    "store_position_table", "relative_buckets", "relative_max_distance", "norm_type", "norm_first", "norm_epsilon",
    "activation", "gated_feed_forward", "use_bias", "attention_scale", "scale_embeddings", "embedding_norm",
    "tie_word_embeddings", "scale_decoder_outputs", "dropout", "attention_dropout", "initializer_range",
}
T5 = {"position_embedding": "relative", "norm_type": "rms", "norm_first": True, "use_bias": False,
      "attention_scale": 1.0, "scale_embeddings": False, "embedding_norm": False}
_BART_FAMILY = {"norm_type": "layer", "use_bias": True, "attention_scale": None, "gated_feed_forward": False,
                "scale_decoder_outputs": False, "norm_epsilon": 1e-5}
# model_type -> (the options it fixes, (base class, LM class), which special id starts the decoder)
BART_LIKE = {
    "bart": ({"position_embedding": "learned", "position_offset": 2, "norm_first": False, "embedding_norm": True,
              **_BART_FAMILY}, ("BartModel", "BartForConditionalGeneration"), "eos_token_id"),
    "mbart": ({"position_embedding": "learned", "position_offset": 2, "norm_first": True, "embedding_norm": True,
               **_BART_FAMILY}, ("MBartModel", "MBartForConditionalGeneration"), "eos_token_id"),
    "marian": ({"position_embedding": "sinusoidal", "sinusoidal_layout": "split", "position_offset": 0,
                "norm_first": False, "embedding_norm": False, **_BART_FAMILY}, ("MarianModel", "MarianMTModel"),
               "pad_token_id"),
}
# (kzoo activation, gated) -> T5's feed_forward_proj (the inverse of hf_seq2seq.T5_FEED_FORWARD)
T5_FEED_FORWARD = {("relu", False): "relu", ("gelu", False): "gelu", ("gelu_tanh", True): "gated-gelu",
                   ("relu", True): "gated-relu", ("silu", True): "gated-silu"}


def export(model):
    """`FamilyExport` of a `Seq2SeqBackbone` or `Seq2SeqLM`."""
    from kzoo.models import Seq2SeqBackbone, Seq2SeqLM

    backbone = model if isinstance(model, Seq2SeqBackbone) else model.backbone
    what = type(model).__name__
    found = _to_hf.options(backbone, {})
    _to_hf.require_defaults(found, KNOWN, _to_hf.defaults(backbone), what)
    head = isinstance(model, Seq2SeqLM)
    notes = [] if head or isinstance(model, Seq2SeqBackbone) else [
        f"{what} has no matching transformers head; only its backbone is written."]
    width = found["hidden_dim"] // found["num_heads"]
    tensors = Tensors()
    logits_bias = getattr(model, "logits_bias_layer", None) if head else None
    if found["position_embedding"] == "relative":
        _to_hf.require(found, T5, "T5", what)
        if logits_bias is not None:
            raise ExportRefused(f"{what}: logits_bias=True has no T5 equivalent (T5 has no final_logits_bias).")
        config = _t5(tensors, backbone, found, head, notes, what)
        model_type, classes = "t5", ("T5Model", "T5ForConditionalGeneration")
        special = {"pad": "pad_token_id", "eos": "eos_token_id"}
        start = "pad_token_id"
    else:
        if found["position_embedding"] == "sinusoidal":
            model_type = "marian"
        else:
            model_type = "mbart" if found["norm_first"] else "bart"
        wanted, classes, start = BART_LIKE[model_type]
        what_kind = {"bart": "BART", "mbart": "mBART (pre-norm BART)", "marian": "Marian (sinusoidal BART)"}
        _to_hf.require(found, {**wanted, "key_dim": (None, width)}, what_kind[model_type], what)
        config = _bart_like(tensors, backbone, found, model_type, "model." if head else "")
        if head:  # (1, V): the model's logits bias, or the zeros transformers stores when there is none
            bias = np.zeros((1, found["vocabulary_size"]), np.float32) if logits_bias is None else \
                _to_hf.value(logits_bias.bias).reshape(1, -1)
            tensors.put("final_logits_bias", bias)
            if not found["tie_word_embeddings"]:  # kzoo's (d, V) output kernel -> nn.Linear (V, d)
                tensors.put("lm_head.weight", _to_hf.value(backbone.token_embedding.reverse_embeddings).T)
        elif not found["tie_word_embeddings"]:
            notes.append(f"{what}: {classes[0]} has no LM head, so the untied output projection is left out.")
        special = {"pad": "pad_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}
    config["is_encoder_decoder"] = True
    required = ("pad",) if model_type == "marian" else ()
    return FamilyExport(classes[head], model_type, config, tensors, notes, special, decoder_start=start,
                        required_tokens=required)


def _t5(tensors, backbone, found, head, notes, what):
    key = (found["activation"], found["gated_feed_forward"])
    if key not in T5_FEED_FORWARD:
        raise ExportRefused(f"{what}: activation={key[0]!r} with gated_feed_forward={key[1]!r} is not a T5 "
                            f"feed_forward_proj (T5 has {sorted(T5_FEED_FORWARD.values())}).")
    tied, scaled = found["tie_word_embeddings"], found["scale_decoder_outputs"]
    if scaled and not tied:
        raise ExportRefused(f"{what}: scale_decoder_outputs=True with tie_word_embeddings=False has no T5 config "
                            "(transformers scales the decoder output exactly when the head is tied).")
    _to_hf.token_table(tensors, backbone.token_embedding, "shared.weight", "T5")
    stacks = (("encoder", backbone.encoder_blocks, backbone.encoder_position, backbone.encoder_final_norm),
              ("decoder", backbone.decoder_blocks, backbone.decoder_position, backbone.decoder_final_norm))
    for side, blocks, bias_layer, final_norm in stacks:
        tensors.put(f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    _to_hf.value(bias_layer.embeddings))  # (buckets, heads), only in block 0
        for index, block in enumerate(blocks):
            layer = f"{side}.block.{index}.layer"
            _t5_attention(tensors, block.self_attention, f"{layer}.0.SelfAttention")
            _to_hf.norm(tensors, block.self_attention_norm, f"{layer}.0.layer_norm")
            ffn = 1
            if side == "decoder":
                _t5_attention(tensors, block.cross_attention, f"{layer}.1.EncDecAttention")
                _to_hf.norm(tensors, block.cross_attention_norm, f"{layer}.1.layer_norm")
                ffn = 2
            dense = f"{layer}.{ffn}.DenseReluDense"
            if found["gated_feed_forward"]:
                _to_hf.feed_forward(tensors, block.feed_forward, f"{dense}.wi_1", f"{dense}.wo", gate=f"{dense}.wi_0")
            else:
                _to_hf.feed_forward(tensors, block.feed_forward, f"{dense}.wi", f"{dense}.wo")
            _to_hf.norm(tensors, block.feed_forward_norm, f"{layer}.{ffn}.layer_norm")
        _to_hf.norm(tensors, final_norm, f"{side}.final_layer_norm")
    if head and not tied:  # T5 v1.1: its own head; kzoo's (d, V) reverse projection -> nn.Linear (V, d)
        tensors.put("lm_head.weight", _to_hf.value(backbone.token_embedding.reverse_embeddings).T)
    elif head and not scaled:
        # Tied but unscaled: transformers 4 reads `tie_word_embeddings: false` as "untied", so the head is stored
        # (a copy of the table); transformers 5 ties the two equal tensors again.
        tensors.put("lm_head.weight", tensors["shared.weight"])
    elif not head and not tied:
        notes.append(f"{what}: T5Model has no LM head, so the backbone's untied output projection is left out.")
    return {
        "vocab_size": found["vocabulary_size"],
        "d_model": found["hidden_dim"],
        "d_kv": found["key_dim"] or found["hidden_dim"] // found["num_heads"],
        "d_ff": found["intermediate_dim"],
        "num_layers": found["num_encoder_layers"],
        "num_decoder_layers": found["num_decoder_layers"],
        "num_heads": found["num_heads"],
        "relative_attention_num_buckets": found["relative_buckets"],
        "relative_attention_max_distance": found["relative_max_distance"],
        "n_positions": found["max_sequence_length"],
        "dropout_rate": found["dropout"],
        "layer_norm_epsilon": found["norm_epsilon"],
        "initializer_factor": found["initializer_range"] / 0.05,  # hf_seq2seq reads initializer_factor * 0.05
        "feed_forward_proj": T5_FEED_FORWARD[key],
        # transformers 5 derives the output scaling from `tie_word_embeddings` (and then ties when the stored
        # head equals the table); transformers 4 reads it as written.
        "tie_word_embeddings": bool(scaled),
        "scale_decoder_outputs": bool(scaled),
    }


def _t5_attention(tensors, layer, name):
    _to_hf.attention(tensors, layer, {role: f"{name}.{short}" for role, short in
                                      (("query", "q"), ("key", "k"), ("value", "v"), ("output", "o"))})


def _bart_like(tensors, backbone, found, model_type, p):
    _to_hf.token_table(tensors, backbone.token_embedding, f"{p}shared.weight", model_type)
    stacks = (("encoder", backbone.encoder_blocks, backbone.encoder_position, backbone.encoder_embedding_norm,
               backbone.encoder_final_norm),
              ("decoder", backbone.decoder_blocks, backbone.decoder_position, backbone.decoder_embedding_norm,
               backbone.decoder_final_norm))
    for side, blocks, positions, embedding_norm, final_norm in stacks:
        if model_type != "marian":  # Marian's sinusoidal tables are computed, not stored (transformers 5)
            # (max_sequence_length + 2, d): BART's table keeps its two offset rows in front.
            tensors.put(f"{p}{side}.embed_positions.weight", _to_hf.value(positions.position_embeddings))
        if embedding_norm is not None:
            _to_hf.norm(tensors, embedding_norm, f"{p}{side}.layernorm_embedding")
        if final_norm is not None:  # mBART's pre-norm stacks end with one
            _to_hf.norm(tensors, final_norm, f"{p}{side}.layer_norm")
        for index, block in enumerate(blocks):
            layer = f"{p}{side}.layers.{index}"
            _bart_attention(tensors, block.self_attention, f"{layer}.self_attn")
            _to_hf.norm(tensors, block.self_attention_norm, f"{layer}.self_attn_layer_norm")
            if side == "decoder":
                _bart_attention(tensors, block.cross_attention, f"{layer}.encoder_attn")
                _to_hf.norm(tensors, block.cross_attention_norm, f"{layer}.encoder_attn_layer_norm")
            _to_hf.feed_forward(tensors, block.feed_forward, f"{layer}.fc1", f"{layer}.fc2")
            _to_hf.norm(tensors, block.feed_forward_norm, f"{layer}.final_layer_norm")
    config = {
        "vocab_size": found["vocabulary_size"],
        "d_model": found["hidden_dim"],
        "encoder_layers": found["num_encoder_layers"],
        "decoder_layers": found["num_decoder_layers"],
        "encoder_attention_heads": found["num_heads"],
        "decoder_attention_heads": found["num_heads"],
        "encoder_ffn_dim": found["intermediate_dim"],
        "decoder_ffn_dim": found["intermediate_dim"],
        "max_position_embeddings": found["max_sequence_length"],
        "activation_function": _to_hf.activation(found["activation"], model_type),
        "scale_embedding": bool(found["scale_embeddings"]),
        "dropout": found["dropout"],
        "attention_dropout": found["attention_dropout"],
        "activation_dropout": 0.0,
        "init_std": found["initializer_range"],
        "tie_word_embeddings": bool(found["tie_word_embeddings"]),
    }
    if model_type == "bart":
        config.update(normalize_before=False, add_final_layer_norm=False)
    if model_type == "marian":
        config.update(decoder_vocab_size=found["vocabulary_size"], share_encoder_decoder_embeddings=True)
    return config


def _bart_attention(tensors, layer, name):
    _to_hf.attention(tensors, layer, {role: f"{name}.{short}_proj" for role, short in
                                      (("query", "q"), ("key", "k"), ("value", "v"), ("output", "out"))})
