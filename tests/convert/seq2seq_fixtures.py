"""Tiny, randomly initialised Marian, mBART and mT5 checkpoints (see hf_fixtures.py for the conventions).

Odd sizes throughout; every parameter is re-drawn (hf_fixtures' rule), then what is
not a free parameter is put back: Marian's sinusoidal position tables (frozen
parameters in transformers) are recomputed from their formula. `final_logits_bias`
(a buffer) is drawn non-zero where asked, so a converter that drops it fails.
Builders return `(directory, model)` with the model in eval mode.
"""

import os

from tests.convert.hf_fixtures import PARAM_STD, _randomize_parameters

MARIAN_VOCAB, MARIAN_PAD = 107, 106  # Marian's pad id is the last one; it is also the decoder start


def _save(model, tmp_dir, name):
    model.eval()
    directory = os.path.join(os.fspath(tmp_dir), name)
    model.save_pretrained(directory)
    return directory, model


def _random_logits_bias(model, seed):
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model.final_logits_bias.copy_(torch.randn(model.final_logits_bias.shape, generator=generator) * PARAM_STD)


def make_marian(tmp_dir, seed=0, logits_bias=True):
    """Marian translation model (`MarianMTModel`, one shared vocabulary, tied LM head).

    vocab 107 (pad = decoder start = 106, eos 0), d_model 36, 4 heads of width 9,
    2 encoder and 2 decoder layers, FFN 41, 40 positions (sinusoidal, sines then
    cosines), swish activation, embeddings x sqrt(36). A random non-zero
    `final_logits_bias` unless `logits_bias=False`.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.MarianConfig(
        vocab_size=MARIAN_VOCAB, d_model=36, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=41, decoder_ffn_dim=41, max_position_embeddings=40,
        activation_function="swish", scale_embedding=True, pad_token_id=MARIAN_PAD, eos_token_id=0,
        decoder_start_token_id=MARIAN_PAD, share_encoder_decoder_embeddings=True,
    )
    model = transformers.MarianMTModel(config)
    _randomize_parameters(model, seed)
    with torch.no_grad():
        for side in (model.model.encoder, model.model.decoder):
            side.embed_positions.weight.copy_(side.embed_positions.create_weight())
    if logits_bias:
        _random_logits_bias(model, seed)
    return _save(model, tmp_dir, "marian")


def make_mbart(tmp_dir, seed=0):
    """mBART (`MBartForConditionalGeneration`): pre-norm blocks, a LayerNorm after the
    embeddings and a final LayerNorm per stack.

    vocab 103, d_model 28, 4 heads of width 7, 2 encoder and 2 decoder layers, FFN 45,
    48 learned positions (+2 offset rows), gelu, embeddings x sqrt(28), pad 1, bos 0,
    eos 2, decoder start 2, a random non-zero `final_logits_bias`.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.MBartConfig(
        vocab_size=103, d_model=28, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=45, decoder_ffn_dim=45, max_position_embeddings=48,
        activation_function="gelu", scale_embedding=True, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = transformers.MBartForConditionalGeneration(config)
    _randomize_parameters(model, seed)
    _random_logits_bias(model, seed)
    return _save(model, tmp_dir, "mbart")


def make_mt5(tmp_dir, seed=0):
    """mT5 (`MT5ForConditionalGeneration`): T5 v1.1 with gated-gelu and its own LM head.

    vocab 109, d_model 20, 3 heads with d_kv 7, d_ff 33, 2 encoder and 2 decoder
    layers, 8 relative buckets with max distance 20, pad 0, eos 1, decoder start 0.
    transformers 5 ties mT5's head to the shared embedding; real mT5 files store their
    own `lm_head.weight`, so it is untied here (as hf_fixtures.make_t5 does for v1.1).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.MT5Config(
        vocab_size=109, d_model=20, d_kv=7, d_ff=33, num_layers=2, num_decoder_layers=2, num_heads=3,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    model = transformers.MT5ForConditionalGeneration(config)
    if model.lm_head.weight is model.shared.weight:
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
        tied = getattr(model, "all_tied_weights_keys", None)
        if isinstance(tied, dict):
            tied.pop("lm_head.weight", None)
    _randomize_parameters(model, seed)
    return _save(model, tmp_dir, "mt5")
