"""BERT masked-LM masking with stateless (seeded, order-independent) random ops.

Reference: Devlin et al. 2019, sec. 3.1 and appendix A.1: 15% of the non-special
tokens are selected (at most `max_predictions`); of those 80% become [MASK], 10% a
random token and 10% stay unchanged. tf_text's `mask_language_model` draws from
stateful random ops, whose results depend on how tf.data schedules parallel `map`
calls, so the masking here uses `tf.random.stateless_*` keyed by element index.
"""

import tensorflow as tf


def mask_tokens(
    token_ids, seed, *, vocabulary_size, mask_id, special_ids, max_predictions, mask_rate=0.15,
    mask_token_rate=0.8, random_token_rate=0.1,
):
    """Masks one sequence.

    Args:
        token_ids: int32 `(s,)` (may contain padding, listed in `special_ids`).
        seed: int `(2,)` stateless seed.
        vocabulary_size: random replacements are drawn from `[0, vocabulary_size)`
            excluding `special_ids`.
        mask_id: the [MASK] id.
        special_ids: ids never selected ([CLS], [SEP], [PAD], ...).
        max_predictions: `p`, the number of prediction slots.

    Returns:
        dict: `token_ids` int32 `(s,)` after masking, `mask_positions` int32 `(p,)`
        (ascending, padded with 0), `mask_ids` int32 `(p,)` original ids (padded 0),
        `mask_weights` float32 `(p,)` (1 for real predictions).
    """
    token_ids = tf.convert_to_tensor(token_ids, tf.int32)
    seed = tf.cast(seed, tf.int64)
    special = tf.constant(sorted(set(int(i) for i in special_ids)), tf.int32)
    is_candidate = tf.reduce_all(tf.not_equal(token_ids[:, None], special[None, :]), axis=1)
    num_candidates = tf.reduce_sum(tf.cast(is_candidate, tf.int32))
    num_selected = tf.cast(tf.round(tf.cast(num_candidates, tf.float32) * mask_rate), tf.int32)
    num_selected = tf.minimum(tf.maximum(num_selected, tf.minimum(num_candidates, 1)), max_predictions)

    # Random order of the candidates; non-candidates sort last.
    scores = tf.random.stateless_uniform(tf.shape(token_ids), seed=seed)
    scores = tf.where(is_candidate, scores, 2.0)
    positions = tf.sort(tf.argsort(scores)[:num_selected])
    originals = tf.gather(token_ids, positions)

    choice = tf.random.stateless_uniform([num_selected], seed=seed + [0, 1 << 40])
    random_ids = _random_non_special(num_selected, seed + [0, 2 << 40], vocabulary_size, special)
    replaced = tf.where(
        choice < mask_token_rate,
        tf.fill([num_selected], mask_id),
        tf.where(choice < mask_token_rate + random_token_rate, random_ids, originals),
    )
    masked = tf.tensor_scatter_nd_update(token_ids, positions[:, None], replaced)
    padding = [[0, max_predictions - num_selected]]
    return {
        "token_ids": masked,
        "mask_positions": tf.ensure_shape(tf.pad(tf.cast(positions, tf.int32), padding), [max_predictions]),
        "mask_ids": tf.ensure_shape(tf.pad(originals, padding), [max_predictions]),
        "mask_weights": tf.ensure_shape(tf.pad(tf.ones([num_selected], tf.float32), padding), [max_predictions]),
    }


def _random_non_special(count, seed, vocabulary_size, special):
    """`count` ids uniform over `[0, vocabulary_size)` minus `special`."""
    allowed = tf.sets.difference(
        tf.range(vocabulary_size, dtype=tf.int32)[None, :], special[None, :]
    ).values
    index = tf.random.stateless_uniform([count], seed=seed, maxval=tf.shape(allowed)[0], dtype=tf.int32)
    return tf.gather(allowed, index)
