"""Attention masks: padding, causal, and how they combine.

A mask is boolean, True where a query may attend to a key. Shapes use b batch,
s query length, t key length.
"""

from keras import ops


def causal_mask(query_length, key_length, query_start=0):
    """Boolean `(s, t)` mask letting query `i` see keys `0 .. query_start + i`.

    `query_start` is the absolute position of the first query: 0 for a full pass,
    the cache index when decoding with a KV cache (keys then span the whole cache).
    """
    query_positions = ops.cast(query_start, "int32") + ops.arange(query_length, dtype="int32")
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.greater_equal(query_positions[:, None], key_positions[None, :])


def sliding_window_mask(query_length, key_length, sliding_window, query_start=0):
    """Boolean `(s, t)` mask letting query `i` see only keys after `query_start + i - sliding_window`.

    With the causal mask this is Mistral's sliding window: each query sees itself and
    the `sliding_window - 1` keys before it (transformers: `kv_idx > q_idx - sliding_window`).
    Positions count as in `causal_mask`: keys from 0, queries from `query_start`.
    """
    query_positions = ops.cast(query_start, "int32") + ops.arange(query_length, dtype="int32")
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.greater(key_positions[None, :], query_positions[:, None] - sliding_window)


def combine_masks(key_padding_mask=None, attention_mask=None, causal=None):
    """ANDs the masks that are given into one boolean `(b or 1, s or 1, t)` mask.

    Args:
        key_padding_mask: `(b, t)`, True (or 1) for real key tokens.
        attention_mask: `(b, s, t)`, True where query s may attend key t.
        causal: `(s, t)` from `causal_mask`.

    Returns:
        Boolean mask broadcastable to `(b, s, t)`, or None when no mask is given.
    """
    combined = None
    if key_padding_mask is not None:
        combined = ops.cast(key_padding_mask, "bool")[:, None, :]  # (b, 1, t)
    for mask in (attention_mask, None if causal is None else causal[None]):
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        combined = mask if combined is None else ops.logical_and(combined, mask)
    return combined
