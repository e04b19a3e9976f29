"""Encoder-decoder backbone: one implementation for the Transformer, T5, BART, mBART and Marian designs."""

import functools
import math

import keras

from kzoo import layers
from kzoo.models.backbone import Backbone, unless_overwritten, weights_initializer
from kzoo.models.seq2seq.config import Seq2SeqConfig

INPUT_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")


@keras.saving.register_keras_serializable(package="kzoo")
class Seq2SeqBackbone(Backbone):
    """A Transformer encoder-decoder with shared token embeddings.

    Inputs (dict): `encoder_token_ids`, `encoder_padding_mask` `(b, t)`,
    `decoder_token_ids`, `decoder_padding_mask` `(b, s)`; ids int, masks 1 for real
    tokens. Outputs (dict): `encoder_sequence_output` `(b, t, d)` and
    `decoder_sequence_output` `(b, s, d)`; the decoder attends causally to itself
    and to the real encoder tokens.

    Args: the fields of `Seq2SeqConfig` (see its table for the published designs),
    and `dtype`. Invalid sizes raise ValueError naming the field.
    """

    config_class = Seq2SeqConfig

    def __init__(
        self,
        vocabulary_size,
        num_encoder_layers,
        num_decoder_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        key_dim=None,
        max_sequence_length=512,
        position_embedding="sinusoidal",
        position_offset=0,
        sinusoidal_layout="interleaved",
        store_position_table=False,
        relative_buckets=32,
        relative_max_distance=128,
        norm_type="layer",
        norm_first=False,
        norm_epsilon=1e-6,
        activation="relu",
        gated_feed_forward=False,
        use_bias=True,
        attention_scale=None,
        scale_embeddings=True,
        embedding_norm=False,
        tie_word_embeddings=True,
        scale_decoder_outputs=False,
        dropout=0.1,
        attention_dropout=0.0,
        initializer_range=0.02,
        dtype=None,
        **kwargs,
    ):
        self.config_class.from_arguments(locals())  # ValueError naming a bad size before anything is built
        # === Layers ===
        # Each layer draws its own values (one shared instance would give every weight the same ones).
        independent = functools.partial(layers.independent_initializer, weights_initializer(initializer_range))
        self.token_embedding = layers.TokenEmbedding(
            vocabulary_size, hidden_dim, tie_weights=tie_word_embeddings,
            embeddings_initializer=independent("token_embedding"),
            embeddings_scale=math.sqrt(hidden_dim) if scale_embeddings else 1.0,
            logits_scale=hidden_dim**-0.5 if scale_decoder_outputs else 1.0,
            dtype=dtype, name="token_embedding",
        )
        self.encoder_position, self.decoder_position = self._position_layers(
            position_embedding, max_sequence_length, position_offset, num_heads,
            relative_buckets, relative_max_distance, independent, dtype,
            dict(layout=sinusoidal_layout, stored=store_position_table),
        )
        self.encoder_embedding_norm = self.decoder_embedding_norm = None
        if embedding_norm:
            self.encoder_embedding_norm = layers.LayerNorm(norm_epsilon, dtype=dtype, name="encoder_embedding_norm")
            self.decoder_embedding_norm = layers.LayerNorm(norm_epsilon, dtype=dtype, name="decoder_embedding_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        block_options = dict(
            key_dim=key_dim, activation=activation, gated_feed_forward=gated_feed_forward, dropout=dropout,
            attention_dropout=attention_dropout, feed_forward_dropout=dropout if norm_first else 0.0,
            norm_first=norm_first, norm_type=norm_type, norm_epsilon=norm_epsilon, use_bias=use_bias,
            attention_scale=attention_scale, dtype=dtype,
        )
        self.encoder_blocks = [
            layers.EncoderBlock(
                num_heads, intermediate_dim, kernel_initializer=independent(f"encoder_block_{i}"),
                name=f"encoder_block_{i}", **block_options,
            )
            for i in range(num_encoder_layers)
        ]
        self.decoder_blocks = [
            layers.DecoderBlock(
                num_heads, intermediate_dim, use_cross_attention=True,
                kernel_initializer=independent(f"decoder_block_{i}"), name=f"decoder_block_{i}", **block_options,
            )
            for i in range(num_decoder_layers)
        ]
        self.encoder_final_norm = self.decoder_final_norm = None
        if norm_first:
            self.encoder_final_norm = layers.get_normalization(norm_type, norm_epsilon, "encoder_final_norm", dtype)
            self.decoder_final_norm = layers.get_normalization(norm_type, norm_epsilon, "decoder_final_norm", dtype)
        self.relative = position_embedding == "relative"

        # === Functional graph ===
        inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in INPUT_NAMES}
        super().__init__(inputs=inputs, outputs=self._forward(inputs), dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.key_dim = key_dim
        self.max_sequence_length = max_sequence_length
        self.position_embedding = position_embedding
        self.position_offset = position_offset
        self.sinusoidal_layout = sinusoidal_layout
        self.store_position_table = store_position_table
        self.relative_buckets = relative_buckets
        self.relative_max_distance = relative_max_distance
        self.norm_type = norm_type
        self.norm_first = norm_first
        self.norm_epsilon = norm_epsilon
        self.activation = activation
        self.gated_feed_forward = gated_feed_forward
        self.use_bias = use_bias
        self.attention_scale = attention_scale
        self.scale_embeddings = scale_embeddings
        self.embedding_norm = embedding_norm
        self.tie_word_embeddings = tie_word_embeddings
        self.scale_decoder_outputs = scale_decoder_outputs
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range

    @staticmethod
    def _position_layers(kind, max_sequence_length, offset, num_heads, buckets, max_distance, independent, dtype,
                         sinusoidal):
        """The (encoder, decoder) position layers of one design (`independent(name)`: the initializer of the
        learned table of layer `name`; `sinusoidal`: the layout and stored options of sinusoidal ones)."""
        if kind == "sinusoidal":
            return tuple(
                layers.SinusoidalPositionEmbedding(
                    max_sequence_length, dtype=dtype, name=f"{side}_position_embedding", **sinusoidal
                )
                for side in ("encoder", "decoder")
            )
        if kind == "learned":
            return tuple(
                layers.PositionEmbedding(
                    max_sequence_length, initializer=independent(f"{side}_position_embedding"), position_offset=offset,
                    dtype=dtype, name=f"{side}_position_embedding",
                )
                for side in ("encoder", "decoder")
            )
        return tuple(
            layers.RelativePositionBias(
                num_heads, buckets, max_distance, bidirectional=side == "encoder", dtype=dtype,
                embeddings_initializer=unless_overwritten("glorot_uniform"), name=f"{side}_relative_position_bias",
            )
            for side in ("encoder", "decoder")
        )

    def _embed(self, token_ids, position_layer, embedding_norm, training, start_index=0, key_length=None):
        """Token (+ absolute position) embeddings; returns `(x, relative bias or None)`.

        `start_index` is the position of the first token (the cache index while
        decoding) and `key_length` the number of keys the relative bias spans
        (default: the number of tokens).
        """
        x = self.token_embedding(token_ids)
        bias = None
        if self.relative:
            bias = position_layer(x, key_length=key_length, start_index=start_index)
        else:
            x = x + position_layer(x, start_index=start_index)
        if embedding_norm is not None:
            x = embedding_norm(x)
        return self.embeddings_dropout(x, training=training), bias

    def encode(self, token_ids, padding_mask, return_attention_scores=False, training=None):
        """Encoder stack: ids `(b, t)` -> `(b, t, d)` (and per-layer scores)."""
        x, bias = self._embed(token_ids, self.encoder_position, self.encoder_embedding_norm, training)
        scores = []
        for block in self.encoder_blocks:
            outputs = block(
                x, padding_mask=padding_mask, attention_bias=bias,
                return_attention_scores=return_attention_scores, training=training,
            )
            x = _collect_scores(outputs, scores, return_attention_scores)
        if self.encoder_final_norm is not None:
            x = self.encoder_final_norm(x)
        return (x, scores) if return_attention_scores else x

    def decode(self, token_ids, padding_mask, encoder_outputs, encoder_padding_mask,
               return_attention_scores=False, training=None):
        """Decoder stack: ids `(b, s)` attending to `encoder_outputs` -> `(b, s, d)`."""
        x, bias = self._embed(token_ids, self.decoder_position, self.decoder_embedding_norm, training)
        scores = []
        for block in self.decoder_blocks:
            outputs = block(
                x, encoder_outputs=encoder_outputs, padding_mask=padding_mask,
                encoder_padding_mask=encoder_padding_mask, self_attention_bias=bias,
                return_attention_scores=return_attention_scores, training=training,
            )
            x = _collect_scores(outputs, scores, return_attention_scores)
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x)
        return (x, scores) if return_attention_scores else x

    def _forward(self, inputs, return_attention_scores=False, training=None):
        encoded = self.encode(
            inputs["encoder_token_ids"], inputs["encoder_padding_mask"], return_attention_scores, training
        )
        if return_attention_scores:
            encoded, encoder_scores = encoded
        decoded = self.decode(
            inputs["decoder_token_ids"], inputs["decoder_padding_mask"], encoded,
            inputs["encoder_padding_mask"], return_attention_scores, training,
        )
        if return_attention_scores:
            decoded, decoder_scores = decoded
        outputs = {"encoder_sequence_output": encoded, "decoder_sequence_output": decoded}
        if return_attention_scores:
            outputs["attention_scores"] = {"encoder": encoder_scores, "decoder": decoder_scores}
        return outputs

    def token_logits(self, decoder_hidden):
        """Vocabulary logits `(b, s, V)` from decoder states (tied or own projection)."""
        return self.token_embedding(decoder_hidden, reverse=True)

    # === Incremental decoding (used by kzoo.generate) ===

    def empty_decoder_cache(self, batch_size, max_length, dtype=None):
        """Zero self-attention KV caches for `decode_with_cache`: a list with one
        `(b, 2, max_length, h, k)` tensor per decoder block."""
        return [block.empty_self_attention_cache(batch_size, max_length, dtype) for block in self.decoder_blocks]

    def cross_attention_caches(self, encoder_outputs):
        """Keys and values of `encoder_outputs` `(b, t, d)` for every decoder block: a list of
        `(b, 2, t, h, k)` tensors, computed once per prompt."""
        return [block.compute_cross_attention_cache(encoder_outputs) for block in self.decoder_blocks]

    def decode_with_cache(self, token_ids, cache, cross_caches, cache_update_index, encoder_padding_mask):
        """Decoder stack over `token_ids` with KV caches (inference only).

        Args:
            token_ids: int `(b, s)`, the decoder tokens at positions
                `cache_update_index .. cache_update_index + s - 1`.
            cache: list from `empty_decoder_cache`, one `(b, 2, t_max, h, k)` per block.
            cross_caches: list from `cross_attention_caches`.
            cache_update_index: int or int32 scalar tensor.
            encoder_padding_mask: bool/int `(b, t)`, True for real encoder tokens.

        Returns:
            `(decoder_sequence_output, cache)`: `(b, s, d)` and the updated caches.
        """
        max_length = keras.ops.shape(cache[0])[2]
        x, bias = self._embed(
            token_ids, self.decoder_position, self.decoder_embedding_norm, False,
            start_index=cache_update_index, key_length=max_length,
        )
        per_block = [dict(self_attention_cache=c, cache_update_index=cache_update_index) for c in cache]
        return self._decode_blocks(x, bias, cross_caches, encoder_padding_mask, per_block)

    def _decode_blocks(self, x, bias, cross_caches, encoder_padding_mask, per_block):
        """The decoder blocks at inference over embedded `x`, each with its own self-attention state
        (`per_block`: the keyword arguments of one block, a cache or a past), then the final norm.
        Returns `(x, [the state each block returned])`."""
        states = []
        for block, cross_cache, state in zip(self.decoder_blocks, cross_caches, per_block, strict=True):
            x, state, _ = block(
                x, encoder_padding_mask=encoder_padding_mask, self_attention_bias=bias,
                cross_attention_cache=cross_cache, training=False, **state,
            )
            states.append(state)
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x)
        return x, states

    # === Growing past (the ONNX export form, see kzoo.export.onnx) ===

    def empty_decoder_past(self, batch_size, dtype=None):
        """Zero-length self-attention past for `decode_with_past` (the first step): one
        `(keys, values)` pair per decoder block, each `(batch_size, 0, h, k)`."""
        return [block.empty_self_attention_past(batch_size, dtype) for block in self.decoder_blocks]

    def decode_with_past(self, token_ids, past_key_values, cross_caches, encoder_padding_mask):
        """Decoder stack over `token_ids` after `past_key_values` (inference only).

        The concatenating counterpart of `decode_with_cache`: each block appends the
        new self-attention keys/values to its past along the time axis and returns
        them (no in-place update, so the graph converts to ONNX). Every decoder token
        is real (as in `kzoo.generate`), so there is no decoder padding mask.

        Args:
            token_ids: int `(b, s)`, the decoder tokens at positions `t_past .. t_past + s - 1`.
            past_key_values: list with one `(keys, values)` pair per decoder block, each
                float `(b, t_past, h, k)` (`empty_decoder_past` for the first step).
            cross_caches: list from `cross_attention_caches`, one `(b, 2, t, h, k)` per block.
            encoder_padding_mask: bool/int `(b, t)`, True for real encoder tokens.

        Returns:
            `(decoder_sequence_output, present)`: `(b, s, d)` and one `(keys, values)`
            pair per block, each `(b, t_past + s, h, k)`.
        """
        if len(past_key_values) != len(self.decoder_blocks):
            raise ValueError(
                f"Seq2SeqBackbone '{self.name}': `past_key_values` holds {len(past_key_values)} (keys, values) "
                f"pairs but the model has {len(self.decoder_blocks)} decoder blocks; pass one per block "
                "(see `empty_decoder_past`)."
            )
        past_length = keras.ops.shape(past_key_values[0][0])[1]
        key_length = past_length + keras.ops.shape(token_ids)[1]
        x, bias = self._embed(
            token_ids, self.decoder_position, self.decoder_embedding_norm, False,
            start_index=past_length, key_length=key_length,
        )
        per_block = [dict(self_attention_past=tuple(past)) for past in past_key_values]
        return self._decode_blocks(x, bias, cross_caches, encoder_padding_mask, per_block)


def _collect_scores(block_outputs, scores, return_attention_scores):
    """The hidden states of a block's outputs; its scores are appended to `scores` when they
    were asked for (without them the attention may run a fused kernel)."""
    if not return_attention_scores:
        return block_outputs
    hidden, block_scores = block_outputs
    scores.append(block_scores)
    return hidden
