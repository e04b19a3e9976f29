"""Score processors applied before a token is chosen, in Hugging Face's order.

Shapes: B rows (batch x beams), V vocabulary. Scores are float32 `(B, V)`: raw
logits for greedy decoding and sampling, log-probabilities for beam search (as in
`transformers`, so the two give the same tokens).
"""

import numpy as np
from keras import ops

NEG_INF = float("-inf")


def stop_token_mask(stop_token_ids, vocabulary_size):
    """bool `(V,)`, True at the stop ids (a constant built on the host)."""
    mask = np.zeros((vocabulary_size,), bool)
    mask[list(stop_token_ids)] = True
    return ops.convert_to_tensor(mask)


def is_stop(tokens, stop_token_ids):
    """bool, True where int `tokens` (any shape) is one of `stop_token_ids` (a tuple)."""
    hits = ops.zeros(ops.shape(tokens), "bool")
    for token_id in stop_token_ids:
        hits = ops.logical_or(hits, ops.equal(tokens, token_id))
    return hits


def seen_tokens(token_ids, padding_mask, vocabulary_size):
    """bool `(B, V)`, True for each id present among the real tokens of a row.

    Args:
        token_ids: int32 `(B, s)`.
        padding_mask: bool `(B, s)`, True on real tokens.
    """
    batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    rows = ops.repeat(ops.arange(batch, dtype="int32")[:, None], length, axis=1)
    indices = ops.reshape(ops.stack([rows, ops.cast(token_ids, "int32")], axis=-1), (-1, 2))
    counts = ops.scatter(indices, ops.reshape(ops.cast(padding_mask, "float32"), (-1,)), (batch, vocabulary_size))
    return counts > 0


def add_seen(seen, tokens):
    """Marks `tokens` `(B,)` as seen in bool `seen` `(B, V)`."""
    vocabulary = ops.arange(ops.shape(seen)[1], dtype="int32")
    return ops.logical_or(seen, ops.equal(vocabulary[None, :], ops.cast(tokens, "int32")[:, None]))


def repetition_penalty(scores, seen, penalty):
    """CTRL's repetition penalty: seen tokens' scores divided by `penalty` when
    positive, multiplied when negative (`transformers.RepetitionPenaltyLogitsProcessor`)."""
    penalised = ops.where(scores < 0, scores * penalty, scores / penalty)
    return ops.where(seen, penalised, scores)


def forbid_stop(scores, stop_mask, step, min_length):
    """Sets the stop tokens' scores to -inf while fewer than `min_length` new tokens exist.

    Args:
        scores: float32 `(B, V)`.
        stop_mask: bool `(V,)` from `stop_token_mask`.
        step: int32 scalar, new tokens generated so far.
        min_length: int, the minimum number of new tokens.
    """
    active = ops.logical_and(stop_mask[None, :], step < min_length)
    return ops.where(active, NEG_INF, scores)


def process(scores, step, options, stop_mask, seen):
    """Applies the processors `options` asks for, in `transformers`' order
    (repetition penalty, then the minimum length)."""
    if options.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, seen, options.repetition_penalty)
    if options.min_length > 0 and options.stop_token_ids:
        scores = forbid_stop(scores, stop_mask, step, options.min_length)
    return scores
