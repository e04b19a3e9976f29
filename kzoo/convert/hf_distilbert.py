"""Hugging Face DistilBERT (`model_type: distilbert`) -> kzoo `BertBackbone` / `BertPretrainer`.

DistilBERT is a BERT encoder (post-norm blocks, learned positions) without segment embeddings and without
a pooler, under its own tensor names: `transformer.layer.{i}.attention.{q,k,v,out}_lin`, `sa_layer_norm`,
`ffn.lin1` / `ffn.lin2`, `output_layer_norm`. Its LayerNorms use epsilon 1e-12 whatever the config says.
A `DistilBertForMaskedLM` file's head (`vocab_transform`, `vocab_layer_norm`, `vocab_projector` tied to the
word embeddings) becomes a `BertPretrainer` masked-LM head. A config with `sinusoidal_pos_embds` stores the
fixed sinusoidal table as its position weights; kzoo loads that table as a learned one (same outputs).
"""

from kzoo.convert import _assign, hf_bert
from kzoo.models import BertBackbone, BertPretrainer

NORM_EPSILON = 1e-12  # hard-coded in transformers' DistilBERT


def config_from_hf(hf):
    """kzoo `BertBackbone` arguments from a DistilBERT `config.json` dict."""
    return dict(
        vocabulary_size=hf["vocab_size"],
        num_layers=hf["n_layers"],
        num_heads=hf["n_heads"],
        hidden_dim=hf["dim"],
        intermediate_dim=hf["hidden_dim"],
        max_sequence_length=hf.get("max_position_embeddings", 512),
        num_segments=0,
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.1),
        activation=_assign.activation(hf.get("activation", "gelu"), "DistilBERT checkpoint"),
        norm_epsilon=NORM_EPSILON,
        initializer_range=hf.get("initializer_range", 0.02),
    )


def load_backbone(reader, hf_config, dtype=None):
    """A `BertBackbone` (no segments, no pooler) filled from a DistilBERT file."""
    p = "distilbert." if reader.has("distilbert.embeddings.word_embeddings.weight") else ""
    backbone = BertBackbone(**config_from_hf(hf_config), use_pooler=False, dtype=dtype)
    _assign.embedding(backbone.token_embedding.embeddings, reader, f"{p}embeddings.word_embeddings.weight")
    _assign.embedding(
        backbone.position_embedding_layer.position_embeddings, reader, f"{p}embeddings.position_embeddings.weight"
    )
    _assign.norm(backbone.embeddings_norm, reader, f"{p}embeddings.LayerNorm")
    for index, block in enumerate(backbone.encoder_blocks):
        layer = f"{p}transformer.layer.{index}"
        _assign.attention(
            block.self_attention,
            reader,
            {
                "query": f"{layer}.attention.q_lin",
                "key": f"{layer}.attention.k_lin",
                "value": f"{layer}.attention.v_lin",
                "output": f"{layer}.attention.out_lin",
            },
        )
        _assign.norm(block.self_attention_norm, reader, f"{layer}.sa_layer_norm")
        _assign.feed_forward(block.feed_forward, reader, f"{layer}.ffn.lin1", f"{layer}.ffn.lin2")
        _assign.norm(block.feed_forward_norm, reader, f"{layer}.output_layer_norm")
    reader.ignore(lambda name: name.endswith("position_ids"))
    return backbone


def load_model(reader, hf_config, dtype=None):
    """A `BertPretrainer` (masked-LM head only) for a `DistilBertForMaskedLM` file, else a `BertBackbone`."""
    backbone = load_backbone(reader, hf_config, dtype)
    if not reader.has("vocab_transform.weight"):
        return backbone
    model = BertPretrainer(backbone, next_sentence_prediction=False)
    hf_bert.load_masked_lm_head(model, reader, transform="vocab_transform", norm="vocab_layer_norm",
                                bias="vocab_projector.bias", decoder="vocab_projector")
    return model
