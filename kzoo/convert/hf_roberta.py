"""Hugging Face RoBERTa and XLM-RoBERTa (`model_type: roberta`, `xlm-roberta`) -> kzoo `BertBackbone` /
`BertPretrainer`.

Both are BERT encoders with BERT's tensor names under `roberta.`; they differ from BERT in their
positions, one segment type and their pretraining head, and from each other only in the tokenizer
(byte-level BPE / SentencePiece), so one converter serves both. Positions start after the padding id:
token `i` of a right-padded row takes row `pad_token_id + 1 + i` of the `max_position_embeddings` table,
which kzoo expresses as `position_offset = pad_token_id + 1` and `max_sequence_length =
max_position_embeddings - position_offset` (512 for `roberta-base`'s 514 rows). The first
`position_offset` rows (the padding row among them) stay in the table, unused by kzoo.
"""

from kzoo.convert import hf_bert
from kzoo.models import BertPretrainer


def config_from_hf(hf):
    """kzoo `BertBackbone` arguments from a RoBERTa / XLM-RoBERTa `config.json` dict."""
    arguments = hf_bert.config_from_hf(hf)
    offset = hf.get("pad_token_id", 1) + 1
    rows = hf.get("max_position_embeddings", 512)
    if rows <= offset:
        raise ValueError(
            f"RoBERTa checkpoint: max_position_embeddings={rows} leaves no position after the padding id "
            f"{offset - 1} (positions start at pad_token_id + 1)."
        )
    arguments.update(max_sequence_length=rows - offset, position_offset=offset)
    return arguments


def load_model(reader, hf_config, dtype=None):
    """A `BertPretrainer` (masked-LM head only) for a `*ForMaskedLM` file (`lm_head.*`), else a `BertBackbone`
    (with the pooler when the file has `pooler.dense`: `RobertaModel` does, the task models do not)."""
    arguments = config_from_hf(hf_config)
    backbone = hf_bert.load_encoder(reader, arguments, hf_bert.model_prefix(reader, "roberta"), dtype)
    if not reader.has("lm_head.dense.weight"):
        return backbone
    if backbone.activation != "gelu":
        raise ValueError(
            f"RoBERTa checkpoint: its masked-LM head always applies gelu, but hidden_act is "
            f"{hf_config.get('hidden_act')!r}; kzoo's head uses the encoder's activation, so it cannot represent it."
        )
    model = BertPretrainer(backbone, next_sentence_prediction=False)
    hf_bert.load_masked_lm_head(model, reader, transform="lm_head.dense", norm="lm_head.layer_norm",
                                bias="lm_head.bias", decoder="lm_head.decoder")
    return model
