"""Hugging Face T5 / mT5 / Flan-T5 (`t5`, `mt5`), BART (`bart`), mBART (`mbart`) and Marian
(`marian`, OPUS-MT) -> kzoo `Seq2SeqBackbone` / `Seq2SeqLM`.

mT5 and Flan-T5 are T5 v1.1 (gated-gelu, untied LM head) and take the T5 path. BART,
mBART and Marian share BART's weight names; they differ in configuration only (see the
table of `Seq2SeqConfig`). A non-zero `final_logits_bias` (Marian's output bias) becomes
`Seq2SeqLM(logits_bias=True)`; an all-zero one, what transformers initialises, adds nothing.
"""

import numpy as np
from keras import ops

from kzoo.convert import _assign
from kzoo.convert.hf_checkpoint import assign
from kzoo.models import Seq2SeqBackbone, Seq2SeqLM

BART_LIKE = ("bart", "mbart", "marian")

T5_FEED_FORWARD = {  # feed_forward_proj -> (activation, gated)
    "relu": ("relu", False),
    "gelu": ("gelu", False),
    "gated-gelu": ("gelu_tanh", True),  # HF maps T5 v1.1's "gated-gelu" to gelu_new
    "gated-relu": ("relu", True),
    "gated-silu": ("silu", True),
}


def t5_config_from_hf(hf, reader):
    """kzoo arguments for a T5 `config.json`; `reader` tells whether the LM head is tied.

    transformers 5 writes `tie_word_embeddings: true` even for v1.1 models whose file
    carries a separate `lm_head.weight`, so the weights decide: a stored head that
    differs from `shared.weight` is untied. Decoder outputs are scaled by d^-0.5 when
    `scale_decoder_outputs` says so (default: when tied, as in T5 v1.0). mT5 (`mt5`) is
    T5 v1.1 and never scales them (transformers' MT5 has no such scaling, and writes
    `tie_word_embeddings: true` for every mT5 file it saves). Flan-T5 is a `t5` file
    with `feed_forward_proj: gated-gelu` and its own head: v1.1 too.
    """
    projection = hf.get("feed_forward_proj", "relu")
    if projection not in T5_FEED_FORWARD:
        raise ValueError(
            f"T5 checkpoint: feed_forward_proj {projection!r} not supported; use {sorted(T5_FEED_FORWARD)}."
        )
    activation, gated = T5_FEED_FORWARD[projection]
    tied = _assign.stored_head_is_tied(reader, "lm_head.weight", "shared.weight")
    scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)) and hf.get("model_type") != "mt5"
    return dict(
        vocabulary_size=hf["vocab_size"],
        num_encoder_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        num_heads=hf["num_heads"],
        hidden_dim=hf["d_model"],
        intermediate_dim=hf["d_ff"],
        key_dim=hf["d_kv"],
        max_sequence_length=hf.get("n_positions", 512),
        position_embedding="relative",
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        norm_type="rms",
        norm_first=True,
        norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
        activation=activation,
        gated_feed_forward=gated,
        use_bias=False,
        attention_scale=1.0,
        scale_embeddings=False,
        embedding_norm=False,
        tie_word_embeddings=tied,
        scale_decoder_outputs=scale,
        dropout=hf.get("dropout_rate", 0.1),
        attention_dropout=hf.get("dropout_rate", 0.1),
        initializer_range=hf.get("initializer_factor", 1.0) * 0.05,
    )


def bart_config_from_hf(hf, reader=None):
    """kzoo arguments for a BART `config.json` (post-norm, embedding norm, learned positions with offset 2)."""
    if hf.get("normalize_before") or hf.get("add_final_layer_norm"):
        raise ValueError("BART checkpoint: its config asks for pre-norm, which model_type 'bart' does not build; "
                         "an mBART-style checkpoint needs model_type 'mbart'.")
    return dict(_bart_like_sizes(hf, "BART", reader), embedding_norm=True,
                scale_embeddings=bool(hf.get("scale_embedding", False)))


def mbart_config_from_hf(hf, reader=None):
    """kzoo arguments for an mBART `config.json`: BART's layout with pre-norm blocks, a
    LayerNorm after the embeddings and a final LayerNorm on each stack."""
    return dict(_bart_like_sizes(hf, "mBART", reader), norm_first=True, embedding_norm=True,
                scale_embeddings=bool(hf.get("scale_embedding", False)))


def marian_config_from_hf(hf, reader=None):
    """kzoo arguments for a Marian (OPUS-MT) `config.json`: post-norm, no embedding norm,
    embeddings x sqrt(d), sinusoidal positions with sines and cosines in two halves, kept as
    frozen tables (as transformers holds them), one vocabulary shared by both sides."""
    vocabulary = hf["vocab_size"]
    if not hf.get("share_encoder_decoder_embeddings", True) or hf.get("decoder_vocab_size") not in (None, vocabulary):
        raise ValueError("Marian checkpoint: separate encoder and decoder vocabularies "
                         "(share_encoder_decoder_embeddings=false) are not supported; kzoo shares one token embedding.")
    sizes = _bart_like_sizes(hf, "Marian", reader)
    return dict(sizes, position_embedding="sinusoidal", position_offset=0, sinusoidal_layout="split",
                store_position_table=True, embedding_norm=False,
                scale_embeddings=bool(hf.get("scale_embedding", False)))


def _bart_like_sizes(hf, what, reader):
    """The arguments BART, mBART and Marian share (post-norm; callers change what differs)."""
    heads = hf["encoder_attention_heads"]
    if hf.get("decoder_attention_heads", heads) != heads or hf.get("decoder_ffn_dim") != hf.get("encoder_ffn_dim"):
        raise ValueError(f"{what} checkpoint: kzoo needs the same heads and FFN width in encoder and decoder.")
    return dict(
        vocabulary_size=hf["vocab_size"],
        num_encoder_layers=hf["encoder_layers"],
        num_decoder_layers=hf["decoder_layers"],
        num_heads=heads,
        hidden_dim=hf["d_model"],
        intermediate_dim=hf["encoder_ffn_dim"],
        max_sequence_length=hf.get("max_position_embeddings", 1024),
        position_embedding="learned",
        position_offset=2,
        norm_type="layer",
        norm_first=False,
        norm_epsilon=1e-5,
        activation=_assign.activation(hf.get("activation_function", "gelu"), f"{what} checkpoint"),
        use_bias=True,
        tie_word_embeddings=reader is None or _assign.stored_head_is_tied(
            reader, "lm_head.weight", _prefix(reader) + "shared.weight"),
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        initializer_range=hf.get("init_std", 0.02),
    )


def _load_t5(reader, backbone):
    _assign.embedding(backbone.token_embedding.embeddings, reader, "shared.weight")
    for side in ("encoder", "decoder"):
        _assign.tied_copy(reader, f"{side}.embed_tokens.weight", backbone.token_embedding.embeddings, "shared.weight")
    stacks = (("encoder", backbone.encoder_blocks, backbone.encoder_position, backbone.encoder_final_norm),
              ("decoder", backbone.decoder_blocks, backbone.decoder_position, backbone.decoder_final_norm))
    for side, blocks, bias_layer, final_norm in stacks:
        _assign.embedding(
            bias_layer.embeddings, reader, f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        )
        for index, block in enumerate(blocks):
            layer = f"{side}.block.{index}.layer"
            _t5_attention(block.self_attention, reader, f"{layer}.0.SelfAttention")
            _assign.norm(block.self_attention_norm, reader, f"{layer}.0.layer_norm")
            ffn = 1
            if side == "decoder":
                _t5_attention(block.cross_attention, reader, f"{layer}.1.EncDecAttention")
                _assign.norm(block.cross_attention_norm, reader, f"{layer}.1.layer_norm")
                ffn = 2
            dense = f"{layer}.{ffn}.DenseReluDense"
            if block.gated_feed_forward:
                _assign.feed_forward(block.feed_forward, reader, f"{dense}.wi_1", f"{dense}.wo", gate=f"{dense}.wi_0")
            else:
                _assign.feed_forward(block.feed_forward, reader, f"{dense}.wi", f"{dense}.wo")
            _assign.norm(block.feed_forward_norm, reader, f"{layer}.{ffn}.layer_norm")
        _assign.norm(final_norm, reader, f"{side}.final_layer_norm")
    if backbone.token_embedding.tie_weights:
        _assign.tied_copy(reader, "lm_head.weight", backbone.token_embedding.embeddings, "shared.weight")
    else:  # T5 v1.1: its own LM head, stored (V, d); kzoo's reverse projection is (d, V)
        assign(backbone.token_embedding.reverse_embeddings, reader.take("lm_head.weight").T, "lm_head.weight")


def _t5_attention(layer, reader, name):
    _assign.attention(layer, reader, {role: f"{name}.{short}" for role, short in
                                      (("query", "q"), ("key", "k"), ("value", "v"), ("output", "o"))})


def _prefix(reader):
    return "model." if reader.has("model.shared.weight") else ""


def _load_bart(reader, backbone):
    """Loads a BART, mBART or Marian backbone; returns the non-zero `final_logits_bias` `(V,)`, or None."""
    p = _prefix(reader)
    _assign.embedding(backbone.token_embedding.embeddings, reader, f"{p}shared.weight")
    for side in ("encoder", "decoder"):
        _assign.tied_copy(reader, f"{p}{side}.embed_tokens.weight", backbone.token_embedding.embeddings, "shared")
    if backbone.token_embedding.tie_weights:
        _assign.tied_copy(reader, "lm_head.weight", backbone.token_embedding.embeddings, "shared")
    else:  # an untied head (Marian with tie_word_embeddings=false), stored (V, d); kzoo's is (d, V)
        assign(backbone.token_embedding.reverse_embeddings, reader.take("lm_head.weight").T, "lm_head.weight")
    stacks = (("encoder", backbone.encoder_blocks, backbone.encoder_position, backbone.encoder_embedding_norm,
               backbone.encoder_final_norm),
              ("decoder", backbone.decoder_blocks, backbone.decoder_position, backbone.decoder_embedding_norm,
               backbone.decoder_final_norm))
    for side, blocks, positions, embedding_norm, final_norm in stacks:
        if backbone.position_embedding == "sinusoidal":
            _sinusoidal_table(positions, reader, f"{p}{side}.embed_positions.weight")
        else:
            _assign.embedding(positions.position_embeddings, reader, f"{p}{side}.embed_positions.weight")
        if embedding_norm is not None:
            _assign.norm(embedding_norm, reader, f"{p}{side}.layernorm_embedding")
        if final_norm is not None:  # mBART's pre-norm stacks end with one
            _assign.norm(final_norm, reader, f"{p}{side}.layer_norm")
        for index, block in enumerate(blocks):
            layer = f"{p}{side}.layers.{index}"
            _bart_attention(block.self_attention, reader, f"{layer}.self_attn")
            _assign.norm(block.self_attention_norm, reader, f"{layer}.self_attn_layer_norm")
            if side == "decoder":
                _bart_attention(block.cross_attention, reader, f"{layer}.encoder_attn")
                _assign.norm(block.cross_attention_norm, reader, f"{layer}.encoder_attn_layer_norm")
            _assign.feed_forward(block.feed_forward, reader, f"{layer}.fc1", f"{layer}.fc2")
            _assign.norm(block.feed_forward_norm, reader, f"{layer}.final_layer_norm")
    logits_bias = reader.take_optional("final_logits_bias")
    if logits_bias is None or not np.any(logits_bias != 0):
        return None
    return logits_bias.reshape(-1)


def _sinusoidal_table(layer, reader, name):
    """Fills a stored sinusoidal table from its formula. Files written before transformers
    stopped saving them hold `embed_positions.weight`: it must equal the formula (kzoo keeps
    the formula's table, never a different one), else ValueError."""
    expected = ops.convert_to_numpy(layer.table)  # the formula, computed in float64 when built
    stored = reader.take_optional(name)
    if stored is not None:
        if stored.shape != expected.shape:
            raise ValueError(f"Checkpoint weight {name!r} has shape {tuple(stored.shape)}, but the sinusoidal "
                             f"position table of this config has {tuple(expected.shape)}.")
        difference = float(np.max(np.abs(stored - expected)))
        if difference > 1e-5:
            raise ValueError(f"Checkpoint weight {name!r} differs from the {layer.layout} sinusoidal formula (max "
                             f"abs difference {difference:.2e}); kzoo keeps the formula's table, so it cannot load it.")
    assign(layer.table, expected, name)


def _bart_attention(layer, reader, name):
    _assign.attention(layer, reader, {role: f"{name}.{short}_proj" for role, short in
                                      (("query", "q"), ("key", "k"), ("value", "v"), ("output", "out"))})


BART_LIKE_CONFIGS = {"bart": bart_config_from_hf, "mbart": mbart_config_from_hf, "marian": marian_config_from_hf}


def load_model(reader, hf_config, dtype=None):
    """A `Seq2SeqLM` from a T5 / mT5, BART, mBART or Marian checkpoint."""
    model_type = hf_config.get("model_type")
    if model_type in ("t5", "mt5"):
        backbone = Seq2SeqBackbone(**t5_config_from_hf(hf_config, reader), dtype=dtype)
        _load_t5(reader, backbone)
        return Seq2SeqLM(backbone)
    if model_type not in BART_LIKE_CONFIGS:
        raise ValueError(f"hf_seq2seq: model_type {model_type!r} is not one of t5, mt5, {', '.join(BART_LIKE)}.")
    backbone = Seq2SeqBackbone(**BART_LIKE_CONFIGS[model_type](hf_config, reader), dtype=dtype)
    logits_bias = _load_bart(reader, backbone)
    model = Seq2SeqLM(backbone, logits_bias=logits_bias is not None)
    if logits_bias is not None:
        assign(model.logits_bias_layer.bias, logits_bias, "final_logits_bias")
    return model
