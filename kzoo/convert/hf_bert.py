"""Hugging Face BERT (`model_type: bert`) -> kzoo `BertBackbone` / `BertPretrainer`.

`load_encoder` and `load_masked_lm_head` also serve the variants whose files keep BERT's tensor
names under another prefix (RoBERTa / XLM-RoBERTa: `roberta.`, ELECTRA: `electra.`).
"""

from kzoo.convert import _assign
from kzoo.models import BertBackbone, BertPretrainer


def config_from_hf(hf):
    """kzoo `BertBackbone` arguments from a BERT `config.json` dict."""
    return dict(
        vocabulary_size=hf["vocab_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        hidden_dim=hf["hidden_size"],
        intermediate_dim=hf["intermediate_size"],
        max_sequence_length=hf.get("max_position_embeddings", 512),
        num_segments=hf.get("type_vocab_size", 2),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        activation=_assign.activation(hf.get("hidden_act", "gelu"), "BERT checkpoint"),
        norm_epsilon=hf.get("layer_norm_eps", 1e-12),
        initializer_range=hf.get("initializer_range", 0.02),
    )


def model_prefix(reader, name):
    """`"{name}."` when the file holds a task model (`bert.`, `roberta.`, `electra.` before the encoder's
    tensors), "" for a bare encoder file (`BertModel`, `RobertaModel`, `ElectraModel`)."""
    return f"{name}." if reader.has(f"{name}.embeddings.word_embeddings.weight") else ""


def load_backbone(reader, hf_config, dtype=None):
    """Builds a `BertBackbone` and fills every weight from `reader`.

    The backbone has a pooler only when the file has its weights (`BertForMaskedLM` and
    `BertModel(add_pooling_layer=False)` files have none): a part the file lacks is not built,
    so nothing is left at its random initial value.
    """
    return load_encoder(reader, config_from_hf(hf_config), model_prefix(reader, "bert"), dtype)


def load_encoder(reader, arguments, p, dtype=None):
    """A `BertBackbone(**arguments)` filled from BERT-named tensors under the prefix `p`.

    Builds the pooler only when the file has `{p}pooler.dense`; the segment embedding
    (`token_type_embeddings`) when `arguments` has segments; the embedding projection
    (ELECTRA's `{p}embeddings_project`) when `embedding_dim` differs from `hidden_dim`.
    """
    has_pooler = reader.has(f"{p}pooler.dense.weight")
    backbone = BertBackbone(**arguments, use_pooler=has_pooler, dtype=dtype)
    _assign.embedding(backbone.token_embedding.embeddings, reader, f"{p}embeddings.word_embeddings.weight")
    if backbone.segment_embedding is not None:
        _assign.embedding(
            backbone.segment_embedding.embeddings, reader, f"{p}embeddings.token_type_embeddings.weight"
        )
    _assign.embedding(
        backbone.position_embedding_layer.position_embeddings, reader, f"{p}embeddings.position_embeddings.weight"
    )
    _assign.norm(backbone.embeddings_norm, reader, f"{p}embeddings.LayerNorm")
    if backbone.embeddings_projection is not None:
        _assign.dense(backbone.embeddings_projection, reader, f"{p}embeddings_project")
    for index, block in enumerate(backbone.encoder_blocks):
        layer = f"{p}encoder.layer.{index}"
        _assign.attention(
            block.self_attention,
            reader,
            {
                "query": f"{layer}.attention.self.query",
                "key": f"{layer}.attention.self.key",
                "value": f"{layer}.attention.self.value",
                "output": f"{layer}.attention.output.dense",
            },
        )
        _assign.norm(block.self_attention_norm, reader, f"{layer}.attention.output.LayerNorm")
        _assign.feed_forward(block.feed_forward, reader, f"{layer}.intermediate.dense", f"{layer}.output.dense")
        _assign.norm(block.feed_forward_norm, reader, f"{layer}.output.LayerNorm")
    if has_pooler:
        _assign.dense(backbone.pooler.dense, reader, f"{p}pooler.dense")
    reader.ignore(lambda name: name.endswith(("position_ids", "token_type_ids")))
    return backbone


def load_model(reader, hf_config, dtype=None):
    """A `BertPretrainer` when the file has the masked-LM head, else a `BertBackbone`."""
    if has_pretraining_heads(reader):
        return load_pretrainer(reader, hf_config, dtype)
    return load_backbone(reader, hf_config, dtype)


def has_pretraining_heads(reader):
    return reader.has("cls.predictions.transform.dense.weight")


def load_pretrainer(reader, hf_config, dtype=None):
    """A `BertPretrainer` with the heads the file has: masked-LM and next-sentence (`BertForPreTraining`),
    or masked-LM only (`BertForMaskedLM`, built with `next_sentence_prediction=False`)."""
    backbone = load_backbone(reader, hf_config, dtype)
    next_sentence = reader.has("cls.seq_relationship.weight")
    if next_sentence and backbone.pooler is None:
        raise ValueError(
            "BERT checkpoint has a next-sentence head (cls.seq_relationship) but no pooler weights "
            "(pooler.dense), which that head reads; kzoo cannot represent it without inventing the pooler."
        )
    model = BertPretrainer(backbone, next_sentence_prediction=next_sentence)
    load_masked_lm_head(model, reader, transform="cls.predictions.transform.dense",
                        norm="cls.predictions.transform.LayerNorm", bias="cls.predictions.bias",
                        decoder="cls.predictions.decoder")
    if next_sentence:
        _assign.dense(model.next_sentence_head.output_dense, reader, "cls.seq_relationship")
    return model


def load_masked_lm_head(model, reader, transform, norm, bias, decoder):
    """Fills the `masked_lm_head` of the `BertPretrainer` `model`: the `transform` dense, its `norm` and the
    output `bias` (full tensor names for the bias, prefixes for the others). The `decoder` projection is tied
    to the word embeddings (its bias to `bias`); a file that stores them anyway must repeat those exactly."""
    head = model.masked_lm_head
    _assign.dense(head.transform, reader, transform)
    _assign.norm(head.norm, reader, norm)
    _assign.embedding(head.bias, reader, bias)
    _assign.tied_copy(reader, f"{decoder}.weight", model.backbone.token_embedding.embeddings, "the word embeddings")
    _assign.tied_copy(reader, f"{decoder}.bias", head.bias, bias)
