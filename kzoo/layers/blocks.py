"""Transformer encoder and decoder blocks, pre-norm or post-norm.

Legend for shape comments: b batch, s query length, t key length, d model width,
h heads, h_kv key/value heads (grouped-query attention; `h` without it), k head size.
"""

import keras

from kzoo.layers import _checks
from kzoo.layers.attention import MultiHeadAttention
from kzoo.layers.feed_forward import ACTIVATIONS, FeedForward
from kzoo.layers.initializers import independent_initializer
from kzoo.layers.normalization import NORM_TYPES, get_normalization


class _TransformerBlock(keras.layers.Layer):
    """Arguments, sublayer factories and residual wiring shared by both blocks.

    Args:
        num_heads: int, attention heads.
        intermediate_dim: int, feed-forward hidden width.
        key_dim: int or None, head size (None: `d / num_heads`).
        activation: feed-forward activation, see `FeedForward`.
        gated_feed_forward: bool, gated feed-forward (GEGLU/SwiGLU/T5 v1.1).
        dropout: float, residual dropout on each sublayer's output.
        attention_dropout: float, dropout on attention probabilities.
        feed_forward_dropout: float, dropout inside the feed-forward network.
        norm_first: bool, pre-norm `x + f(norm(x))` (GPT-2, T5) instead of post-norm
            `norm(x + f(x))` (original Transformer, BERT, BART).
        norm_type: "layer" (LayerNorm) or "rms" (RMSNorm, T5).
        norm_epsilon: float, epsilon of the norms.
        use_bias: bool, biases in attention and feed-forward (False for T5).
        attention_scale: float or None, see `MultiHeadAttention`.
        rotary_max_wavelength, rotary_dim: rotary positions in self attention.
        kernel_initializer, bias_initializer: initializers of all projections.
        num_key_value_heads: int or None, key/value heads of every attention
            (grouped-query attention, see `MultiHeadAttention`); None: `num_heads`.
        attention_use_bias: bool or None, biases on the query/key/value projections;
            None follows `use_bias` (Qwen2: True with `use_bias=False`).
        attention_output_bias: bool or None, bias on the attention output projection;
            None follows `attention_use_bias`.
        sliding_window: int or None, self attention sees only that many positions
            (the query's own included), Mistral; None: all.
        rotary_scaling: None or a Hugging Face `rope_scaling` dict for the rotary
            positions of self attention (see `RotaryEmbedding`).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        activation="gelu",
        gated_feed_forward=False,
        dropout=0.0,
        attention_dropout=0.0,
        feed_forward_dropout=0.0,
        norm_first=False,
        norm_type="layer",
        norm_epsilon=1e-5,
        use_bias=True,
        attention_scale=None,
        rotary_max_wavelength=None,
        rotary_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        num_key_value_heads=None,
        attention_use_bias=None,
        attention_output_bias=None,
        sliding_window=None,
        rotary_scaling=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.check_positive_int("num_heads", num_heads, self.name)
        _checks.check_positive_int("intermediate_dim", intermediate_dim, self.name)
        _checks.check_choice("activation", activation, ACTIVATIONS, self.name)
        _checks.check_choice("norm_type", norm_type, NORM_TYPES, self.name)
        for name, rate in (
            ("dropout", dropout),
            ("attention_dropout", attention_dropout),
            ("feed_forward_dropout", feed_forward_dropout),
        ):
            _checks.check_rate(name, rate, self.name)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.key_dim = key_dim
        self.activation = activation
        self.gated_feed_forward = gated_feed_forward
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.feed_forward_dropout = feed_forward_dropout
        self.norm_first = norm_first
        self.norm_type = norm_type
        self.norm_epsilon = norm_epsilon
        self.use_bias = use_bias
        self.attention_scale = attention_scale
        self.rotary_max_wavelength = rotary_max_wavelength
        self.rotary_dim = rotary_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.num_key_value_heads = num_key_value_heads
        self.attention_use_bias = attention_use_bias
        self.attention_output_bias = attention_output_bias
        self.sliding_window = sliding_window
        self.rotary_scaling = rotary_scaling
        self.supports_masking = True

    def _check_inputs_shape(self, inputs_shape):
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}': `inputs` must be (batch, sequence, "
                f"hidden) with a known hidden size, got shape {tuple(inputs_shape)}."
            )
        self.hidden_dim = int(inputs_shape[-1])
        if self.key_dim is None:
            _checks.check_divisible(
                "hidden_dim (the inputs' width)", self.hidden_dim, "num_heads", self.num_heads, self.name
            )

    def _attention(self, name, rotary):
        """Self attention (`rotary=True`: rotary positions and the sliding window, when set) or cross attention."""
        use_bias = self.use_bias if self.attention_use_bias is None else self.attention_use_bias
        return MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            use_bias=use_bias,
            output_bias=use_bias if self.attention_output_bias is None else self.attention_output_bias,
            num_key_value_heads=self.num_key_value_heads,
            dropout=self.attention_dropout,
            attention_scale=self.attention_scale,
            rotary_max_wavelength=self.rotary_max_wavelength if rotary else None,
            rotary_dim=self.rotary_dim if rotary else None,
            rotary_scaling=self.rotary_scaling if rotary else None,
            sliding_window=self.sliding_window if rotary else None,
            kernel_initializer=independent_initializer(self.kernel_initializer, name),
            bias_initializer=independent_initializer(self.bias_initializer, name),
            dtype=self.dtype_policy,
            name=name,
        )

    def _feed_forward(self):
        return FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            gated=self.gated_feed_forward,
            use_bias=self.use_bias,
            dropout=self.feed_forward_dropout,
            kernel_initializer=independent_initializer(self.kernel_initializer, "feed_forward"),
            bias_initializer=independent_initializer(self.bias_initializer, "feed_forward"),
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def _norm(self, name):
        return get_normalization(self.norm_type, self.norm_epsilon, name, self.dtype_policy)

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def _build_self_attention(self, inputs_shape):
        self._check_inputs_shape(inputs_shape)
        self.self_attention = self._attention("self_attention", rotary=True)
        self.self_attention.build(inputs_shape)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_norm.build(inputs_shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")

    def _build_feed_forward(self, inputs_shape):
        self.feed_forward = self._feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)
        self.feed_forward_dropout_layer = self._dropout("feed_forward_dropout")

    def _feed_forward_residual(self, inputs, training):
        output, _ = self._residual(
            inputs,
            lambda y: (self.feed_forward(y, training=training), None),
            self.feed_forward_norm,
            self.feed_forward_dropout_layer,
            training,
        )
        return output

    def _residual(self, inputs, sublayer, norm, dropout, training):
        """Pre-norm `x + drop(f(norm(x)))` or post-norm `norm(x + drop(f(x)))`.

        `sublayer` maps the (possibly normalized) input to `(output, extras)`.
        """
        if self.norm_first:
            output, extras = sublayer(norm(inputs))
            return inputs + dropout(output, training=training), extras
        output, extras = sublayer(inputs)
        return norm(inputs + dropout(output, training=training)), extras

    def _check_call_inputs(self, inputs):
        _checks.check_rank("inputs", inputs, 3, self)
        _checks.check_last_dim(
            "inputs", inputs, self.hidden_dim, self, "A block keeps one width throughout."
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "key_dim": self.key_dim,
                "activation": self.activation,
                "gated_feed_forward": self.gated_feed_forward,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "feed_forward_dropout": self.feed_forward_dropout,
                "norm_first": self.norm_first,
                "norm_type": self.norm_type,
                "norm_epsilon": self.norm_epsilon,
                "use_bias": self.use_bias,
                "attention_scale": self.attention_scale,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "rotary_dim": self.rotary_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "num_key_value_heads": self.num_key_value_heads,
                "attention_use_bias": self.attention_use_bias,
                "attention_output_bias": self.attention_output_bias,
                "sliding_window": self.sliding_window,
                "rotary_scaling": self.rotary_scaling,
            }
        )
        return config


def _first_given(*masks):
    return next((mask for mask in masks if mask is not None), None)


@keras.saving.register_keras_serializable(package="kzoo")
class EncoderBlock(_TransformerBlock):
    """Self attention + feed-forward, each wrapped in a residual and a norm.

    The encoder layer of BERT, BART, T5 and the original Transformer (and, with
    `use_causal_mask=True`, a decoder-only block without a cache). See
    `_TransformerBlock` for the constructor arguments.

    Masks: `padding_mask` `(b, s)` marks real tokens; when it is not passed, the Keras
    mask carried by `inputs` (e.g. from `TokenEmbedding(mask_zero=True)`) is used,
    and it propagates to the output.

    Example:
        >>> block = EncoderBlock(num_heads=4, intermediate_dim=128)
        >>> y = block(x, padding_mask=mask)  # x: (b, s, d) -> y: (b, s, d)
    """

    def build(self, inputs_shape):
        self._build_self_attention(inputs_shape)
        self._build_feed_forward(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        mask=None,
        inputs_mask=None,
    ):
        """Args:
            inputs: float `(b, s, d)`.
            padding_mask: bool/int `(b, s)`, True for real tokens.
            attention_mask: bool/int `(b, s, s)`, custom pattern ANDed with the rest.
            attention_bias: float broadcastable to `(b, h, s, s)`, e.g. T5 bias.
            use_causal_mask: bool, forbid attending to later positions.
            return_attention_scores: bool, also return `(b, h, s, s)` probabilities.
            training: bool, enables dropout.

        Returns:
            `(b, s, d)` in the compute dtype, and the scores when requested.
        """
        self._check_call_inputs(inputs)
        padding_mask = _first_given(padding_mask, inputs_mask, mask)

        def attend(x):
            outputs = self.self_attention(
                x,
                padding_mask=padding_mask,
                attention_mask=attention_mask,
                attention_bias=attention_bias,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            # Scores only when asked: without them the attention may use a fused kernel.
            return outputs if return_attention_scores else (outputs, None)

        x, scores = self._residual(
            inputs, attend, self.self_attention_norm, self.self_attention_dropout, training
        )
        x = self._feed_forward_residual(x, training)
        return (x, scores) if return_attention_scores else x


@keras.saving.register_keras_serializable(package="kzoo")
class DecoderBlock(_TransformerBlock):
    """Causal self attention, optional cross attention, feed-forward; with KV caches.

    The decoder layer of GPT-2 (no cross attention) and of BART, T5 and the
    original Transformer (`use_cross_attention=True`). See `_TransformerBlock` for
    the shared arguments.

    Args:
        use_cross_attention: bool, attend to `encoder_outputs` after self attention.
        (other arguments as in `_TransformerBlock`)

    Incremental decoding: pass `self_attention_cache` `(b, 2, t_max, h_kv, k)` and
    `cache_update_index`; the block writes the new tokens' keys and values, attends
    over the cache and returns it updated. `cross_attention_cache` (from
    `compute_cross_attention_cache`) saves re-projecting the encoder outputs each
    step. One token at a time gives the same outputs as the full causal pass.

    Growing past (the ONNX export form): pass `self_attention_past` `(keys, values)`,
    each `(b, t_past, h_kv, k)` (zero-length for a prefill, see `empty_self_attention_past`);
    the new tokens' keys/values are concatenated after them and the block returns
    `present` `(keys, values)`, each `(b, t_past + s, h_kv, k)`, in the place of the
    updated self-attention cache.

    Example:
        >>> block = DecoderBlock(num_heads=4, intermediate_dim=128, use_cross_attention=True)
        >>> y = block(x, encoder_outputs=enc, encoder_padding_mask=enc_mask)
    """

    def __init__(self, num_heads, intermediate_dim, use_cross_attention=False, **kwargs):
        super().__init__(num_heads, intermediate_dim, **kwargs)
        self.use_cross_attention = use_cross_attention

    def build(self, inputs_shape, encoder_outputs_shape=None):
        self._build_self_attention(inputs_shape)
        if self.use_cross_attention:
            self.cross_attention = self._attention("cross_attention", rotary=False)
            self.cross_attention.build(inputs_shape, encoder_outputs_shape or inputs_shape)
            self.cross_attention_norm = self._norm("cross_attention_norm")
            self.cross_attention_norm.build(inputs_shape)
            self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self._build_feed_forward(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        encoder_outputs=None,
        padding_mask=None,
        encoder_padding_mask=None,
        self_attention_bias=None,
        cross_attention_bias=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        cache_update_index=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        mask=None,
        inputs_mask=None,
        encoder_outputs_mask=None,
        self_attention_past=None,
    ):
        """Args:
            inputs: float `(b, s, d)` decoder hidden states.
            encoder_outputs: float `(b, t, d_enc)`; required with cross attention
                unless `cross_attention_cache` is given.
            padding_mask: bool/int `(b, s)` (or `(b, t_max)` with a cache), True for
                real decoder tokens. Without a cache, defaults to the Keras mask of
                `inputs`.
            encoder_padding_mask: bool/int `(b, t)`, True for real encoder tokens;
                defaults to the Keras mask of `encoder_outputs`.
            self_attention_bias, cross_attention_bias: float, broadcastable to
                `(b, h, s, keys)`.
            self_attention_cache: float `(b, 2, t_max, h_kv, k)` or None.
            cross_attention_cache: float `(b, 2, t, h_kv, k)` or None.
            cache_update_index: int or scalar tensor, position of the first token of
                `inputs` (required with `self_attention_cache`).
            use_causal_mask: bool, True for autoregressive decoding.
            return_attention_scores: bool, also return a dict with
                "self_attention" and (with cross attention) "cross_attention"
                probabilities `(b, h, s, keys)`.
            training: bool, enables dropout.
            self_attention_past: None or `(keys, values)`, each float
                `(b, t_past, h_kv, k)`; `padding_mask` then covers `t_past + s` keys.
                Not combinable with `self_attention_cache`.

        Returns:
            `outputs` `(b, s, d)`; then the updated `self_attention_cache` (or the
            `present` `(keys, values)` pair when `self_attention_past` was given) and
            the `cross_attention_cache` when they were given; then the scores dict
            when requested.
        """
        self._check_call_inputs(inputs)
        if self_attention_past is not None and self_attention_cache is not None:
            raise ValueError(
                f"DecoderBlock '{self.name}': pass either `self_attention_cache` (a fixed buffer written "
                "at `cache_update_index`) or `self_attention_past` (a growing past), not both."
            )
        if self_attention_cache is not None and cache_update_index is None:
            raise ValueError(
                f"DecoderBlock '{self.name}': `self_attention_cache` needs "
                "`cache_update_index`, the position of the first token of `inputs`."
            )
        if self.use_cross_attention and encoder_outputs is None and cross_attention_cache is None:
            raise ValueError(
                f"DecoderBlock '{self.name}' was built with `use_cross_attention=True`: pass "
                "`encoder_outputs` (or a `cross_attention_cache`)."
            )
        if not self.use_cross_attention and (encoder_outputs is not None or cross_attention_cache is not None):
            raise ValueError(
                f"DecoderBlock '{self.name}' has no cross attention; build it with "
                "`use_cross_attention=True` to attend to `encoder_outputs`."
            )
        if self_attention_cache is None and self_attention_past is None:
            padding_mask = _first_given(padding_mask, inputs_mask, mask)
        encoder_padding_mask = _first_given(encoder_padding_mask, encoder_outputs_mask)
        scores = {}

        def self_attend(x):
            outputs = self.self_attention(
                x,
                padding_mask=padding_mask,
                attention_bias=self_attention_bias,
                use_causal_mask=use_causal_mask,
                cache=self_attention_cache,
                cache_update_index=cache_update_index,
                return_attention_scores=return_attention_scores,
                training=training,
                past_key_value=self_attention_past,
            )
            if not isinstance(outputs, tuple):
                return outputs, ()
            return outputs[0], outputs[1:]

        x, extras = self._residual(
            inputs, self_attend, self.self_attention_norm, self.self_attention_dropout, training
        )
        has_self_state = self_attention_cache is not None or self_attention_past is not None
        new_self_cache = extras[0] if has_self_state else None
        if return_attention_scores:
            scores["self_attention"] = extras[-1]

        if self.use_cross_attention:

            def cross_attend(y):
                outputs = self.cross_attention(
                    y,
                    key_value=encoder_outputs if cross_attention_cache is None else None,
                    padding_mask=encoder_padding_mask,
                    attention_bias=cross_attention_bias,
                    cache=cross_attention_cache,
                    return_attention_scores=return_attention_scores,
                    training=training,
                )
                if not isinstance(outputs, tuple):  # no cache given and no scores asked
                    return outputs, None
                return outputs[0], outputs[-1] if return_attention_scores else None

            x, cross_scores = self._residual(
                x, cross_attend, self.cross_attention_norm, self.cross_attention_dropout, training
            )
            if return_attention_scores:
                scores["cross_attention"] = cross_scores

        x = self._feed_forward_residual(x, training)
        results = (x,)
        if has_self_state:
            results += (new_self_cache,)
        if cross_attention_cache is not None:
            results += (cross_attention_cache,)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    def compute_cross_attention_cache(self, encoder_outputs):
        """Keys and values of `encoder_outputs` `(b, t, d_enc)` -> `(b, 2, t, h_kv, k)`."""
        if not self.use_cross_attention:
            raise ValueError(f"DecoderBlock '{self.name}' has no cross attention.")
        return self.cross_attention.compute_cache(encoder_outputs)

    def empty_self_attention_cache(self, batch_size, max_length, dtype=None):
        """Zeros `(batch_size, 2, max_length, h_kv, k)` for incremental decoding."""
        return self.self_attention.empty_cache(batch_size, max_length, dtype)

    def empty_self_attention_past(self, batch_size, dtype=None):
        """Zero-length `(keys, values)`, each `(batch_size, 0, h_kv, k)`, for a prefill with
        `self_attention_past`."""
        return self.self_attention.empty_past(batch_size, dtype)

    def get_config(self):
        config = super().get_config()
        config["use_cross_attention"] = self.use_cross_attention
        return config
