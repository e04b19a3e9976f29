"""T5 relative position bias: learned per-head scalars for bucketed key-query offsets."""

import math

import keras
from keras import ops

from kzoo.layers import _checks
from kzoo.layers.initializers import independent_initializer


@keras.saving.register_keras_serializable(package="kzoo")
class RelativePositionBias(keras.layers.Layer):
    """Relative position bias of T5 (Raffel et al. 2020, sec. 2.1).

    The offset `key_position - query_position` falls into one of `num_buckets`
    buckets: exact buckets for small offsets, logarithmically wider ones up to
    `max_distance`, beyond which all offsets share the last bucket. Bidirectional
    (encoder) bias spends half the buckets on positive offsets; the causal (decoder)
    variant only distinguishes how far back a key is. Each bucket has one learned
    scalar per head, added to the attention logits.

    Args:
        num_heads: int, number of attention heads.
        num_buckets: int, buckets in total (32 in T5).
        max_distance: int, offset from which all share the last bucket (128 in T5).
        bidirectional: bool, True for encoder self attention, False for the decoder.
        embeddings_initializer: initializer of the `(num_buckets, num_heads)` table.

    Call: `query` `(b, s, d)` (shape only), `key_length` int (default `s`),
    `start_index` position of the first query (the cache index while decoding) ->
    float `(1, num_heads, s, key_length)` bias in the compute dtype.
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        embeddings_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("num_heads", num_heads), ("num_buckets", num_buckets), ("max_distance", max_distance)):
            _checks.check_positive_int(name, value, self.name)
        minimum_buckets = 4 if bidirectional else 2
        if num_buckets < minimum_buckets:
            raise ValueError(
                f"{self.name}: `num_buckets` must be at least {minimum_buckets}, got {num_buckets}."
            )
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, query_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            initializer=independent_initializer(self.embeddings_initializer, "embeddings"),
        )
        self.built = True

    def bucket(self, relative_position):
        """Maps int offsets `key - query` to bucket ids in `[0, num_buckets)`."""
        num_buckets = self.num_buckets
        buckets = ops.zeros_like(relative_position)
        if self.bidirectional:
            num_buckets //= 2
            buckets = ops.cast(relative_position > 0, "int32") * num_buckets
            distance = ops.abs(relative_position)
        else:
            distance = -ops.minimum(relative_position, 0)
        max_exact = num_buckets // 2
        scaled = ops.log(ops.cast(ops.maximum(distance, 1), "float32") / max_exact) / math.log(
            self.max_distance / max_exact
        )
        large = max_exact + ops.cast(scaled * (num_buckets - max_exact), "int32")
        large = ops.minimum(large, num_buckets - 1)
        return buckets + ops.where(distance < max_exact, distance, large)

    def call(self, query, key_length=None, start_index=0):
        _checks.check_rank("query", query, 3, self)
        query_length = ops.shape(query)[1]
        key_length = query_length if key_length is None else key_length
        query_positions = ops.cast(start_index, "int32") + ops.arange(query_length, dtype="int32")
        key_positions = ops.arange(key_length, dtype="int32")
        offsets = key_positions[None, :] - query_positions[:, None]  # (s, t)
        bias = ops.take(self.embeddings, self.bucket(offsets), axis=0)  # (s, t, h)
        bias = ops.transpose(bias, (2, 0, 1))[None]  # (1, h, s, t)
        return ops.cast(bias, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
