"""GPT-style decoder-only backbone: pre-norm causal blocks; GPT-2 and, by configuration, Llama-style decoders."""

import functools

import keras

from kzoo import layers
from kzoo.layers.embeddings import rotary_scaling_with_context
from kzoo.layers.normalization import get_normalization
from kzoo.models.backbone import Backbone, weights_initializer
from kzoo.models.gpt.config import GPTConfig


@keras.saving.register_keras_serializable(package="kzoo")
class GPTBackbone(Backbone):
    """The GPT-2 decoder stack (Radford et al. 2019), optionally with rotary positions.

    Llama-style decoders (Touvron et al. 2023: RMSNorm, SwiGLU, rotary positions with
    `rope_scaling`, grouped-query attention, untied output; Mistral's sliding window;
    Qwen2's q/k/v biases) are the same stack configured by `GPTConfig`'s fields.

    Inputs (dict): `token_ids` int `(b, s)`, `padding_mask` int/bool `(b, s)`.
    Output (dict): `sequence_output` `(b, s, hidden_dim)`, after the final norm.

    Args: the fields of `GPTConfig`, and `dtype`. Invalid sizes raise ValueError naming the field.
        Each is kept as an attribute of the same name: `position_embedding` is the option
        ("learned" or "rotary"); the learned table's layer is `position_embedding_layer`
        (None for rotary positions).
    """

    config_class = GPTConfig

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length=1024,
        position_embedding="learned",
        rotary_max_wavelength=10000.0,
        rotary_dim=None,
        dropout=0.1,
        activation="gelu_tanh",
        norm_epsilon=1e-5,
        initializer_range=0.02,
        pad_vocabulary_to_multiple_of=1,
        num_key_value_heads=None,
        norm_type="layer",
        gated_feed_forward=False,
        attention_bias=True,
        attention_output_bias=True,
        feed_forward_bias=True,
        tie_word_embeddings=True,
        rotary_scaling=None,
        sliding_window=None,
        dtype=None,
        **kwargs,
    ):
        self.config_class.from_arguments(locals())  # ValueError naming a bad size before anything is built
        rotary = position_embedding == "rotary"
        # === Layers ===
        # Each layer draws its own values (one shared instance would give every weight the same ones).
        independent = functools.partial(layers.independent_initializer, weights_initializer(initializer_range))
        self.token_embedding = layers.TokenEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_word_embeddings,
            embeddings_initializer=independent("token_embedding"),
            pad_to_multiple_of=pad_vocabulary_to_multiple_of,
            dtype=dtype,
            name="token_embedding",
        )
        self.position_embedding_layer = None
        if not rotary:
            self.position_embedding_layer = layers.PositionEmbedding(
                max_sequence_length, initializer=independent("position_embedding"), dtype=dtype,
                name="position_embedding",
            )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.decoder_blocks = [
            layers.DecoderBlock(
                num_heads,
                intermediate_dim,
                activation=activation,
                dropout=dropout,
                attention_dropout=dropout,
                gated_feed_forward=gated_feed_forward,
                norm_first=True,
                norm_type=norm_type,
                norm_epsilon=norm_epsilon,
                use_bias=feed_forward_bias,
                attention_use_bias=attention_bias,
                attention_output_bias=attention_output_bias,
                num_key_value_heads=num_key_value_heads,
                sliding_window=sliding_window,
                rotary_max_wavelength=rotary_max_wavelength if rotary else None,
                rotary_dim=rotary_dim if rotary else None,
                rotary_scaling=rotary_scaling_with_context(rotary_scaling, max_sequence_length) if rotary else None,
                kernel_initializer=independent(f"decoder_block_{index}"),
                dtype=dtype,
                name=f"decoder_block_{index}",
            )
            for index in range(num_layers)
        ]
        self.final_norm = get_normalization(norm_type, norm_epsilon, "final_norm", dtype)

        # === Functional graph ===
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
        }
        super().__init__(inputs=inputs, outputs=self._forward(inputs), dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.position_embedding = position_embedding
        self.rotary_max_wavelength = rotary_max_wavelength
        self.rotary_dim = rotary_dim
        self.dropout = dropout
        self.activation = activation
        self.norm_epsilon = norm_epsilon
        self.initializer_range = initializer_range
        self.pad_vocabulary_to_multiple_of = pad_vocabulary_to_multiple_of
        self.num_key_value_heads = num_key_value_heads
        self.norm_type = norm_type
        self.gated_feed_forward = gated_feed_forward
        self.attention_bias = attention_bias
        self.attention_output_bias = attention_output_bias
        self.feed_forward_bias = feed_forward_bias
        self.tie_word_embeddings = tie_word_embeddings
        self.rotary_scaling = rotary_scaling
        self.sliding_window = sliding_window

    def _forward(self, inputs, return_attention_scores=False, training=None):
        x = self.token_embedding(inputs["token_ids"])
        if self.position_embedding_layer is not None:  # rotary positions live in the attention
            x = x + self.position_embedding_layer(x)
        x = self.embeddings_dropout(x, training=training)
        scores = []
        for block in self.decoder_blocks:
            # Scores only when asked: without them the attention may run a fused kernel.
            outputs = block(
                x, padding_mask=inputs["padding_mask"], return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                x, block_scores = outputs
                scores.append(block_scores["self_attention"])
            else:
                x = outputs
        outputs = {"sequence_output": self.final_norm(x)}
        if return_attention_scores:
            outputs["attention_scores"] = scores
        return outputs

    # === Incremental decoding (used by kzoo.generate) ===

    def empty_cache(self, batch_size, max_length, dtype=None):
        """Zero KV caches for `call_with_cache`: a list with one `(b, 2, max_length, h_kv, k)`
        tensor per decoder block (h_kv: `num_key_value_heads`, or `num_heads`), in the compute dtype unless
        `dtype` is given."""
        return [block.empty_self_attention_cache(batch_size, max_length, dtype) for block in self.decoder_blocks]

    def call_with_cache(self, token_ids, cache=None, cache_update_index=0, padding_mask=None, position_ids=None):
        """Runs the decoder stack on `token_ids`, optionally writing into KV caches (inference only).

        The layers are the backbone's own; this entry point only adds what decoding needs:
        a KV cache per block and per-row positions, so that left-padded prompts of
        different lengths share one buffer.

        Args:
            token_ids: int `(b, s)`; with a cache, the tokens at buffer positions
                `cache_update_index .. cache_update_index + s - 1`.
            cache: None for a full causal pass over `token_ids`, or the list from
                `empty_cache` (one `(b, 2, t_max, h_kv, k)` tensor per block).
            cache_update_index: int or int32 scalar tensor, buffer position of the first
                token (0 without a cache).
            padding_mask: bool/int `(b, t_max)` with a cache, `(b, s)` without; True for
                real tokens (False for left padding). None: everything is real.
            position_ids: int `(b, s)` position of each token for learned position
                embeddings (a left-padded row counts from its first real token). None:
                `cache_update_index + arange(s)` for every row. Rotary models ignore it:
                rotary attention depends only on the offset between positions, which
                left padding leaves unchanged.

        Returns:
            `(sequence_output, cache)`: `(b, s, hidden_dim)` after the final norm, and
            the updated list of caches (None without a cache).
        """
        x = self.token_embedding(token_ids)
        if self.position_embedding_layer is not None:
            if position_ids is None:
                x = x + self.position_embedding_layer(x, start_index=cache_update_index)
            else:
                table = keras.ops.cast(self.position_embedding_layer.position_embeddings, x.dtype)
                x = x + keras.ops.take(table, keras.ops.cast(position_ids, "int32"), axis=0)
        new_cache = None if cache is None else []
        for index, block in enumerate(self.decoder_blocks):
            if cache is None:
                x = block(x, padding_mask=padding_mask, training=False)
            else:
                x, layer_cache = block(
                    x,
                    padding_mask=padding_mask,
                    self_attention_cache=cache[index],
                    cache_update_index=cache_update_index,
                    training=False,
                )
                new_cache.append(layer_cache)
        return self.final_norm(x), new_cache

    # === Growing past (the ONNX export form, see kzoo.export.onnx) ===

    def empty_past(self, batch_size, dtype=None):
        """Zero-length past keys/values for `call_with_past` (a prefill): a list with one
        `(keys, values)` pair per decoder block, each `(batch_size, 0, h_kv, k)`."""
        return [block.empty_self_attention_past(batch_size, dtype) for block in self.decoder_blocks]

    def call_with_past(self, token_ids, past_key_values, padding_mask=None, position_ids=None):
        """Runs the decoder stack on `token_ids` after `past_key_values` (inference only).

        The concatenating counterpart of `call_with_cache` (Hugging Face's
        `past_key_values` convention): instead of writing into a fixed buffer, each
        block concatenates the new keys/values after its past along the time axis and
        returns them, so the graph has no in-place update (it converts to ONNX).

        Args:
            token_ids: int `(b, s)`, the tokens at positions `t_past .. t_past + s - 1`.
            past_key_values: list with one `(keys, values)` pair per block, each float
                `(b, t_past, h_kv, k)` (`empty_past` for a prefill).
            padding_mask: bool/int `(b, t_past + s)`, True for real tokens (False for
                left padding), over the past and the new tokens. None: all real.
            position_ids: int `(b, s)` position of each token for learned position
                embeddings (a left-padded row counts from its first real token). None:
                `t_past + arange(s)` for every row. Rotary models ignore it (see
                `call_with_cache`); their angles start at `t_past`.

        Returns:
            `(sequence_output, present)`: `(b, s, hidden_dim)` after the final norm, and
            a list with one `(keys, values)` pair per block, each `(b, t_past + s, h_kv, k)`.
        """
        if len(past_key_values) != len(self.decoder_blocks):
            raise ValueError(
                f"GPTBackbone '{self.name}': `past_key_values` holds {len(past_key_values)} (keys, values) "
                f"pairs but the model has {len(self.decoder_blocks)} decoder blocks; pass one per block "
                "(see `empty_past`)."
            )
        x = self.token_embedding(token_ids)
        if self.position_embedding_layer is not None:
            if position_ids is None:
                past_length = keras.ops.shape(past_key_values[0][0])[1]
                x = x + self.position_embedding_layer(x, start_index=past_length)
            else:
                table = keras.ops.cast(self.position_embedding_layer.position_embeddings, x.dtype)
                x = x + keras.ops.take(table, keras.ops.cast(position_ids, "int32"), axis=0)
        present = []
        for block, past in zip(self.decoder_blocks, past_key_values, strict=True):
            x, layer_present = block(x, padding_mask=padding_mask, self_attention_past=tuple(past), training=False)
            present.append(layer_present)
        return self.final_norm(x), present

    def token_logits(self, hidden):
        """Vocabulary logits `(..., V)` from hidden states: the tied token embedding's transpose, or the untied
        `(d, V)` output kernel (`tie_word_embeddings=False`)."""
        return self.token_embedding(hidden, reverse=True)
