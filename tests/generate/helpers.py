"""Tiny random models and reference decoders for the generation tests.

The tiny models share their widths (vocabulary 61, hidden 16, 2 heads of 8,
feed-forward 24), so under JAX the per-shape compilations of weight initializers
and eager ops are paid once for all of them.

Reference decoders call the model's ordinary forward pass (`model(inputs)`) once
per token, on one unpadded row at a time, so they share nothing with
`kzoo.generate` (no cache, no padding, no compiled loop).
"""

import numpy as np

from kzoo import models
from tests.harness import to_numpy

# Prompts of different lengths: exercises left padding (causal) and right padding (encoder).
PROMPTS = [[5, 17, 33, 2, 9, 11], [7, 8], [40, 3, 4, 30]]


def randomize(model, seed=0, std=0.5):
    """Normal weights around 0, norm gains around 1 (like tests/convert/hf_fixtures.py):
    tiny models then emit varied tokens with clear argmax margins (> 1e-2 here), so
    float rounding cannot flip a greedy choice."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        noise = rng.normal(0.0, std, variable.shape)
        if variable.path.endswith("scale"):
            noise = noise + 1.0
        variable.assign(noise.astype(variable.dtype))


def tiny_gpt(position_embedding="learned", vocabulary_size=61, seed=0, max_sequence_length=32):
    backbone = models.GPTBackbone(
        vocabulary_size=vocabulary_size, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=24,
        max_sequence_length=max_sequence_length, position_embedding=position_embedding, dropout=0.0,
    )
    model = models.GPTCausalLM(backbone)
    randomize(model, seed=seed)
    return model


def tiny_seq2seq(design, vocabulary_size=61, seed=0):
    """A 1+2-layer encoder-decoder in the "t5" (relative positions, RMS pre-norm, untied
    head) or "bart" (learned positions with offset 2, post-norm, embedding norm) design."""
    common = dict(
        vocabulary_size=vocabulary_size, num_encoder_layers=1, num_decoder_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=24, max_sequence_length=32, dropout=0.0, attention_dropout=0.0,
    )
    if design == "t5":
        config = dict(
            position_embedding="relative", relative_buckets=8, relative_max_distance=16, norm_type="rms",
            norm_first=True, use_bias=False, attention_scale=1.0, scale_embeddings=False,
            tie_word_embeddings=False, gated_feed_forward=True, activation="gelu_tanh",
        )
    else:
        config = dict(
            position_embedding="learned", position_offset=2, activation="gelu", norm_epsilon=1e-5,
            scale_embeddings=False, embedding_norm=True,
        )
    model = models.Seq2SeqLM(models.Seq2SeqBackbone(**common, **config))
    randomize(model, seed=seed)
    return model


def _right_padded(rows):
    width = max(len(row) for row in rows)
    ids = np.zeros((len(rows), width), "int32")
    mask = np.zeros((len(rows), width), "int32")
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask


def causal_argmax_continuations(model, prompts, generated):
    """For each row, the argmax of the ordinary forward pass over `prompt + generated`
    at the positions that predict the generated tokens (teacher forcing: equal to
    `generated` exactly when every generated token is the greedy choice given its prefix).

    One model call on the right-padded batch: causal attention keeps padding at the end
    from influencing earlier positions.
    """
    rows = [list(prompt) + list(map(int, out)) for prompt, out in zip(prompts, generated, strict=True)]
    ids, mask = _right_padded(rows)
    logits = to_numpy(model({"token_ids": ids, "padding_mask": mask}))
    steps = len(generated[0])
    return np.stack([
        np.argmax(logits[index, len(prompt) - 1 : len(prompt) - 1 + steps], axis=-1)
        for index, prompt in enumerate(prompts)
    ])


def seq2seq_argmax_continuations(model, prompts, generated, start_id):
    """The decoder argmax at every step with `[start_id] + generated[:-1]` fed in
    (teacher forcing; one model call)."""
    source, source_mask = _right_padded(prompts)
    generated = np.asarray(generated, "int32")
    target = np.concatenate([np.full((len(prompts), 1), start_id, "int32"), generated[:, :-1]], axis=1)
    logits = to_numpy(model({
        "encoder_token_ids": source, "encoder_padding_mask": source_mask,
        "decoder_token_ids": target, "decoder_padding_mask": np.ones_like(target),
    }))
    return np.argmax(logits, axis=-1)
