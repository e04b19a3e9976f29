"""Tiny, randomly initialised Hugging Face checkpoints of the BERT-family variants.

RoBERTa / XLM-RoBERTa, DistilBERT and ELECTRA, built and saved like the models of `hf_fixtures`
(`_finish`: every parameter re-drawn, eval mode, safetensors) with small odd sizes of their own, so that
a transpose, a head split, an offset or a projection the converter gets wrong shows up as a shape error or
wrong numbers. Each builder returns `(directory, model)`; `VARIANTS` lists the masked-LM builders with the
pad id their inputs use.
"""

from tests.convert.hf_fixtures import _finish


def make_roberta(tmp_dir, seed=0, xlm=False, head="masked_lm"):
    """RoBERTa (`RobertaForMaskedLM`) or, with `xlm=True`, XLM-RoBERTa (`XLMRobertaForMaskedLM`); with
    `head="model"` the bare encoder with its pooler (`RobertaModel` / `XLMRobertaModel`).

    vocab 103, hidden 28, 4 heads of width 7, 2 layers, intermediate 41, 42 position rows (positions start
    at pad id + 1 = 2, so 40 usable), 1 token type, layer-norm epsilon 1e-5, pad 1.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config_class = transformers.XLMRobertaConfig if xlm else transformers.RobertaConfig
    config = config_class(
        vocab_size=103, hidden_size=28, num_hidden_layers=2, num_attention_heads=4, intermediate_size=41,
        hidden_act="gelu", max_position_embeddings=42, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    family = "XLMRoberta" if xlm else "Roberta"
    model_class = getattr(transformers, f"{family}ForMaskedLM" if head == "masked_lm" else f"{family}Model")
    name = ("xlm_roberta" if xlm else "roberta") + ("" if head == "masked_lm" else f"_{head}")
    return _finish(model_class(config), tmp_dir, name, seed)


def make_distilbert(tmp_dir, seed=0):
    """DistilBERT (`DistilBertForMaskedLM`): vocab 97, dim 30, 5 heads of width 6, 2 layers, hidden 43,
    48 positions, gelu, no token types, pad 0."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.DistilBertConfig(
        vocab_size=97, dim=30, n_layers=2, n_heads=5, hidden_dim=43, max_position_embeddings=48,
        activation="gelu", pad_token_id=0,
    )
    return _finish(transformers.DistilBertForMaskedLM(config), tmp_dir, "distilbert", seed)


def make_electra(tmp_dir, seed=0, head="generator"):
    """ELECTRA with embeddings narrower than the encoder (embedding 18 -> hidden 30, `embeddings_project`).

    `head`: "generator" (`ElectraForMaskedLM`, the masked-LM head maps 30 -> 18 before the tied
    embeddings) or "discriminator" (`ElectraForPreTraining`, with the replaced-token-detection head).
    vocab 89, 3 heads of width 10, 2 layers, intermediate 37, 40 positions, 2 token types, pad 0.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.ElectraConfig(
        vocab_size=89, embedding_size=18, hidden_size=30, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=37, hidden_act="gelu", max_position_embeddings=40, type_vocab_size=2, pad_token_id=0,
    )
    model_class = transformers.ElectraForMaskedLM if head == "generator" else transformers.ElectraForPreTraining
    return _finish(model_class(config), tmp_dir, f"electra_{head}", seed)


# name -> (builder, pad id of its inputs, whether the model takes token_type_ids)
VARIANTS = {
    "roberta": (make_roberta, 1, True),
    "xlm_roberta": (lambda tmp_dir: make_roberta(tmp_dir, xlm=True), 1, True),
    "distilbert": (make_distilbert, 0, False),
    "electra": (make_electra, 0, True),
}
