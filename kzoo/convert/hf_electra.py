"""Hugging Face ELECTRA (`model_type: electra`) -> kzoo `BertBackbone` / `BertPretrainer`.

An ELECTRA encoder is BERT's with BERT's tensor names under `electra.`, no pooler, and embeddings of
`embedding_size`, projected to `hidden_size` by `embeddings_project` when the two differ (kzoo:
`embedding_dim` and `embeddings_projection`).

What each file becomes:
- `ElectraModel` (the discriminator's encoder, as fine-tuned): a `BertBackbone`.
- `ElectraForPreTraining` (the discriminator with its replaced-token-detection head): the backbone; kzoo
  has no replaced-token-detection task, so the head's tensors are dropped with a one-line warning naming
  them, never silently.
- `ElectraForMaskedLM` (the generator): a `BertPretrainer` with the masked-LM head only; its transform maps
  `hidden_size` to `embedding_size`, the width of the tied word embeddings.
"""

import warnings

from kzoo.convert import hf_bert
from kzoo.models import BertPretrainer

DISCRIMINATOR_HEAD = "discriminator_predictions."


def config_from_hf(hf):
    """kzoo `BertBackbone` arguments from an ELECTRA `config.json` dict."""
    arguments = hf_bert.config_from_hf(hf)
    width = hf.get("embedding_size", 128)
    arguments["embedding_dim"] = None if width == arguments["hidden_dim"] else width
    return arguments


def load_model(reader, hf_config, dtype=None):
    """The backbone, or a `BertPretrainer` for a generator (`generator_predictions.*`) file; see the module."""
    backbone = hf_bert.load_encoder(reader, config_from_hf(hf_config), hf_bert.model_prefix(reader, "electra"), dtype)
    dropped = reader.ignore(lambda name: name.startswith(DISCRIMINATOR_HEAD))
    if dropped:
        warnings.warn(
            f"ELECTRA checkpoint: kzoo has no replaced-token-detection task; loaded the discriminator's encoder "
            f"and dropped its head, {len(dropped)} tensors: {', '.join(dropped)}.", stacklevel=2,
        )
    if not reader.has("generator_predictions.dense.weight"):
        return backbone
    if backbone.activation != "gelu":
        raise ValueError(
            f"ELECTRA generator checkpoint: its masked-LM head always applies gelu, but hidden_act is "
            f"{hf_config.get('hidden_act')!r}; kzoo's head uses the encoder's activation, so it cannot represent it."
        )
    model = BertPretrainer(backbone, next_sentence_prediction=False)
    hf_bert.load_masked_lm_head(model, reader, transform="generator_predictions.dense",
                                norm="generator_predictions.LayerNorm", bias="generator_lm_head.bias",
                                decoder="generator_lm_head")
    return model
