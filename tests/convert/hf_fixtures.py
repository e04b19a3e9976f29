"""Tiny, randomly initialised Hugging Face checkpoints for converter tests.

Every builder creates a small model with deliberately odd sizes (vocabularies
that are not multiples of 8, head dims that are not powers of two, FFN widths
that are not multiples of the model width) so that transposes, head splits and
off-by-one mistakes in a converter show up as shape errors or wrong numbers.

All parameters (LayerNorm gains and biases included) are re-drawn at random, so
a mapping bug cannot hide behind a zero bias or a unit gain. Gains are drawn
around 1 and everything else around 0 with a small spread, which keeps the
activations of these two-layer models in a sane range.

Builders save the model with `save_pretrained` (safetensors) into a fresh
sub-directory of `tmp_dir` and return `(directory, model)`; the model is in eval
mode. torch and transformers are imported lazily, so importing this module
costs nothing when they are absent.
"""

import inspect
import os

import numpy as np

# Spread of the random parameters: std of weights/biases, and of gains around 1.
PARAM_STD = 0.2


def _randomize_parameters(model, seed):
    """Re-draws every parameter of `model` in place.

    1-D tensors called `weight` (LayerNorm / RMSNorm gains) become
    `1 + N(0, PARAM_STD)`; every other parameter becomes `N(0, PARAM_STD)`.
    Tied parameters are the same tensor object, so they stay tied. Buffers
    (position ids, BART's `final_logits_bias`, ...) are left as they are.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * PARAM_STD
            if param.ndim == 1 and name.endswith("weight"):
                noise = noise + 1.0
            param.copy_(noise.to(param.dtype))


def _finish(model, tmp_dir, name, seed):
    """Randomises, switches to eval mode and saves `model` under `tmp_dir/name`."""
    _randomize_parameters(model, seed)
    model.eval()
    directory = os.path.join(os.fspath(tmp_dir), name)
    kwargs = {}
    # transformers 4.x needs the flag to write safetensors; 5.x always does and
    # no longer has the argument.
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True
    model.save_pretrained(directory, **kwargs)
    return directory, model


BERT_CLASSES = {  # make_bert's `head` -> the transformers class (and whether it has a pooler)
    "pretraining": ("BertForPreTraining", True),  # MLM + NSP heads, pooler
    "masked_lm": ("BertForMaskedLM", False),  # MLM head only, no pooler
    "no_pooler": ("BertModel", False),  # the encoder alone, built with add_pooling_layer=False
}


def make_bert(tmp_dir, seed=0, head="pretraining"):
    """BERT with MLM and NSP heads (`BertForPreTraining`), or another head (`BERT_CLASSES`).

    vocab 101, hidden 24, 4 heads of width 6, 2 layers, intermediate 37,
    64 positions, 2 token types, gelu (erf) activation, pad id 0.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=101,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        max_position_embeddings=64,
        type_vocab_size=2,
        pad_token_id=0,
    )
    class_name, _ = BERT_CLASSES[head]
    model_class = getattr(transformers, class_name)
    model = model_class(config, add_pooling_layer=False) if head == "no_pooler" else model_class(config)
    return _finish(model, tmp_dir, "bert" if head == "pretraining" else f"bert_{head}", seed)


def make_gpt2(tmp_dir, seed=0):
    """GPT-2 language model (`GPT2LMHeadModel`, LM head tied to `wte`).

    vocab 113, width 40, 4 heads of width 10, 2 layers, inner width 37,
    64 positions, gelu_new (tanh) activation. BOS/EOS are the last id (112);
    there is no pad id. Note GPT-2 stores its projections as `Conv1D`, i.e.
    kernels already in `(in, out)` layout.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=113,
        n_positions=64,
        n_embd=40,
        n_layer=2,
        n_head=4,
        n_inner=37,
        activation_function="gelu_new",
        bos_token_id=112,
        eos_token_id=112,
    )
    return _finish(transformers.GPT2LMHeadModel(config), tmp_dir, "gpt2", seed)


def make_t5(tmp_dir, seed=0, gated=False):
    """T5 encoder-decoder (`T5ForConditionalGeneration`).

    vocab 107, d_model 24, 3 heads with d_kv 10 (so heads * d_kv = 30 differs
    from d_model), d_ff 37, 2 encoder and 2 decoder layers, 8 relative
    attention buckets with max distance 20. pad 0, eos 1, decoder start 0.

    Args:
        gated: False gives T5 v1.0 style (`feed_forward_proj="relu"`, LM head
            tied to the shared embedding, decoder output scaled by
            `d_model ** -0.5`); True gives v1.1 style (`"gated-gelu"` with
            gelu_new, separate `lm_head.weight`, no output scaling). With
            transformers 5.x the saved config.json of the gated model still says
            `"tie_word_embeddings": true` but `"scale_decoder_outputs": false`.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=107,
        d_model=24,
        d_kv=10,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=3,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = transformers.T5ForConditionalGeneration(config)
    if gated and model.lm_head.weight is model.shared.weight:
        # transformers 5.x forces `tie_word_embeddings=True` in T5Config (it keeps
        # only `scale_decoder_outputs=False`), so a fresh model has its LM head
        # tied. Real v1.1 checkpoints store a separate `lm_head.weight`; untie it
        # so that the saved file looks like them.
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
        tied = getattr(model, "all_tied_weights_keys", None)
        if isinstance(tied, dict):
            tied.pop("lm_head.weight", None)
    name = "t5_gated" if gated else "t5"
    return _finish(model, tmp_dir, name, seed)


def make_bart(tmp_dir, seed=0):
    """BART encoder-decoder (`BartForConditionalGeneration`).

    vocab 131, d_model 40, 4 heads of width 10, 2 encoder and 2 decoder
    layers, FFN 37, 64 positions (BART's learned position table has 2 extra
    rows: offset 2), gelu activation, no embedding scaling. pad 1, bos 0,
    eos 2, decoder start 2.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BartConfig(
        vocab_size=131,
        d_model=40,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        activation_function="gelu",
        max_position_embeddings=64,
        scale_embedding=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )
    return _finish(transformers.BartForConditionalGeneration(config), tmp_dir, "bart", seed)


def random_ids(batch, length, vocab, seed, pad_id=None, padding=True):
    """Random token ids with a right-padding mask.

    Row 0 is always full length; with `padding=True` (and `batch > 1`,
    `length > 1`) row 1 is always padded and the other rows get random lengths
    in `[1, length]`. Real tokens never equal `pad_id`; padded positions hold
    `pad_id` (0 when `pad_id` is None).

    Returns:
        `(ids, mask)`, both int32 of shape `(batch, length)`; `mask` is 1 for
        real tokens and 0 for padding.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch, length))
    if pad_id is not None:
        # Move real tokens off the pad id without changing the id range.
        ids = np.where(ids == pad_id, (pad_id + 1) % vocab, ids)
    lengths = np.full(batch, length)
    if padding and length > 1:
        lengths = rng.integers(1, length + 1, size=batch)
        lengths[0] = length
        if batch > 1:
            lengths[1] = rng.integers(1, length)
    mask = np.arange(length)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, 0 if pad_id is None else pad_id)
    return ids.astype("int32"), mask.astype("int32")
