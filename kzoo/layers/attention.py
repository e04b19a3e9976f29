"""Multi-head attention with masks, additive bias, rotary positions and a KV cache.

Legend for shape comments: b batch, s query length, t key length, h heads, k head
dim, d model width.
"""

import math

import keras
from keras import ops

from kzoo.layers import _checks
from kzoo.layers.cache_updates import write_at
from kzoo.layers.embeddings import RotaryEmbedding
from kzoo.layers.initializers import independent_initializer
from kzoo.layers.masks import causal_mask, combine_masks, sliding_window_mask

# Replaces the logits of masked positions (in float32). Finite, so that a row whose
# keys are all masked never produces NaN; such rows are then zeroed.
MASKED_LOGIT = -1e9


def project(projection, inputs):
    """Applies one of the attention projections (a Keras `EinsumDense`) to `(b, s, ...)` `inputs`.

    The same arithmetic as `projection(inputs)`, written as one 2-D matmul plus a bias add:
    `(b·s, d_in) @ (d_in, d_out)`, with the kernel's head axes folded into `d_in`/`d_out` by free reshapes.
    With a dynamic sequence length TensorFlow runs the layer's einsum as a generic `Einsum` and its bias as a
    separate add; the 2-D form is what TensorFlow's graph optimizer fuses into one oneDNN matmul with its bias, as
    ONNX Runtime does with its graph (BERT-base SavedModel: tools/bench_export.py). XLA compiles both forms to the
    same dot. A projection with LoRA enabled or quantized runs its own call, which adds the adapters or runs the
    quantized kernel.
    """
    if projection.lora_enabled or projection.quantization_mode is not None:
        return projection(inputs)
    kernel = projection.kernel
    input_axes = len(inputs.shape) - 2  # 1 for (b, s, d), 2 for (b, s, h, k)
    input_width, output_shape = math.prod(kernel.shape[:input_axes]), tuple(kernel.shape[input_axes:])
    batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
    outputs = ops.matmul(ops.reshape(inputs, (-1, input_width)), ops.reshape(kernel, (input_width, -1)))
    if projection.bias is not None:
        outputs = outputs + ops.reshape(projection.bias, (-1,))
    return ops.reshape(outputs, (batch, length) + output_shape)

@keras.saving.register_keras_serializable(package="kzoo")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, sec. 3.2).

    `softmax(scale * Q K^T + bias + mask) V` per head, then an output projection.
    Self attention when `key_value` is None, cross attention otherwise. The softmax
    runs in float32 under mixed precision.

    Masks (boolean or 0/1, True = may attend) combine by AND:
      * `padding_mask` `(b, t)`: which keys are real tokens;
      * `attention_mask` `(b, s, t)`: any custom pattern;
      * `use_causal_mask=True`: query `i` sees keys `<= i` (offset by the cache index).
    A query whose keys are all masked gets zero probabilities (and a zero context)
    instead of NaN or an average over padding.

    Grouped-query attention (Ainslie et al. 2023; Llama 2/3, Mistral, Qwen2): with
    `num_key_value_heads` `h_kv < h`, the key and value projections have `h_kv` heads and
    each serves `g = h / h_kv` consecutive query heads (query head `i` reads key/value
    head `i // g`, as transformers' `repeat_kv` pairs them). Only the `h_kv` heads are
    projected, cached and returned as `present`; below, `h` in key/value/cache shapes is
    `h_kv`. The explicit path groups the queries `(b, s, h_kv, g, k)` instead of copying
    keys and values `g` times.

    Sliding window (Mistral): with `sliding_window` `w`, query position `p` sees only keys
    at positions `> p - w` (itself and the `w - 1` before it, transformers' mask), on top
    of the causal and padding masks; positions count from the start of the cache or past.

    KV cache (incremental decoding): pass `cache` `(b, 2, t_max, h, k)` (keys, values)
    with `cache_update_index` (int or scalar tensor). The new keys/values of the `s`
    query tokens are written at `cache_update_index`, attention runs over the cache,
    and keys after the newest token are always masked. The updated cache is
    returned. A `cache` without `cache_update_index` is a fixed precomputed cache
    (cross attention over encoder outputs, see `compute_cache`).

    Past keys/values (the growing-cache form ONNX exports use, Hugging Face's
    `past_key_values` convention): pass `past_key_value=(keys, values)`, each
    `(b, t_past, h, k)`, for self attention. The new tokens' keys/values are
    concatenated after them along the time axis (no in-place write, so the graph
    converts to ONNX), the queries sit at positions `t_past ..` (causal mask and
    rotary angles), and the call also returns `present = (keys, values)`, each
    `(b, t_past + s, h, k)`. Zero-length pasts (`t_past = 0`, see `empty_past`) make
    it a prefill pass.

    The four projections are Keras `EinsumDense` sublayers named `query` (kernel `(d, h, k)`), `key`, `value`
    (kernels `(d, h_kv, k)`; biases `(h or h_kv, k)`) and `output` (kernel `(h, k, d_out)`), so Keras'
    `enable_lora` and `quantize` reach them (`kzoo.models.lora`); `.keras` files of the earlier layout, where the
    layer owned the eight variables itself, still load (`load_own_variables`).

    Args:
        num_heads: int, number of heads.
        key_dim: int or None, size of each head; None means `d / num_heads`, which
            then must divide evenly.
        output_dim: int or None, width of the output; None means the query width.
        use_bias: bool, biases on the query, key and value projections (False for T5
            and Llama; True for Qwen2).
        output_bias: bool or None, bias on the output projection; None follows
            `use_bias` (Qwen2 has q/k/v biases and none on the output).
        num_key_value_heads: int or None, key/value heads (grouped-query attention);
            must divide `num_heads`. None: `num_heads` (the attribute holds the number).
        dropout: float, dropout on the attention probabilities.
        attention_scale: float or None, logit multiplier; None means `1/sqrt(k)`
            (T5 uses 1.0: its scale is folded into the initialization).
        rotary_max_wavelength: float or None, apply rotary position embedding with
            this base to queries and keys (self attention); None disables it.
        rotary_dim: int or None, features per head that rotate (None: all).
        rotary_scaling: None or a Hugging Face `rope_scaling` dict ("linear",
            "dynamic", "llama3", "yarn"), see `RotaryEmbedding`; needs rotary positions.
        sliding_window: int or None, how many positions (the query's own included)
            each query sees in self attention (Mistral); None: all.
        kernel_initializer, bias_initializer: initializers of the projections.

    Example:
        >>> mha = MultiHeadAttention(num_heads=4)
        >>> y = mha(x, padding_mask=mask, use_causal_mask=True)  # x: (b, s, d)
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        output_dim=None,
        use_bias=True,
        dropout=0.0,
        attention_scale=None,
        rotary_max_wavelength=None,
        rotary_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        num_key_value_heads=None,
        output_bias=None,
        sliding_window=None,
        rotary_scaling=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.check_positive_int("num_heads", num_heads, self.name)
        _checks.check_positive_int("num_key_value_heads", num_key_value_heads, self.name, allow_none=True)
        _checks.check_positive_int("sliding_window", sliding_window, self.name, allow_none=True)
        num_key_value_heads = num_heads if num_key_value_heads is None else num_key_value_heads
        _checks.check_divisible("num_heads", num_heads, "num_key_value_heads", num_key_value_heads, self.name)
        if rotary_scaling is not None and rotary_max_wavelength is None:
            raise ValueError(f"MultiHeadAttention '{self.name}': `rotary_scaling` scales rotary positions; set "
                             "`rotary_max_wavelength` too (or drop `rotary_scaling`).")
        _checks.check_positive_int("key_dim", key_dim, self.name, allow_none=True)
        _checks.check_positive_int("output_dim", output_dim, self.name, allow_none=True)
        _checks.check_rate("dropout", dropout, self.name)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.output_dim = output_dim
        self.use_bias = use_bias
        self.output_bias = output_bias
        self.num_key_value_heads = num_key_value_heads
        self.sliding_window = sliding_window
        self.rotary_scaling = rotary_scaling
        self.dropout = dropout
        self.attention_scale = attention_scale
        self.rotary_max_wavelength = rotary_max_wavelength
        self.rotary_dim = rotary_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.supports_masking = True  # the output keeps the query's mask
        self.rotary_embedding = None
        if rotary_max_wavelength is not None:
            self.rotary_embedding = RotaryEmbedding(
                max_wavelength=rotary_max_wavelength,
                rotary_dim=rotary_dim,
                scaling=rotary_scaling,
                dtype=self.dtype_policy,
                name="rotary_embedding",
            )
            self.rotary_scaling = self.rotary_embedding.scaling  # validated, "type" spelled "rope_type"

    def build(self, query_shape, key_value_shape=None):
        if len(query_shape) != 3 or query_shape[-1] is None:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': `query` must be (batch, sequence, "
                f"hidden) with a known hidden size, got shape {tuple(query_shape)}."
            )
        key_value_shape = query_shape if key_value_shape is None else key_value_shape
        self.hidden_dim = int(query_shape[-1])
        if self.key_dim is None:
            _checks.check_divisible(
                "hidden_dim (the query width)", self.hidden_dim, "num_heads", self.num_heads, self.name
            )
        self.head_dim = self.key_dim or self.hidden_dim // self.num_heads
        self.key_value_dim = int(key_value_shape[-1])
        width = self.output_dim or self.hidden_dim
        heads = (self.num_heads, self.head_dim)
        key_value_heads = (self.num_key_value_heads, self.head_dim)
        output_bias = self.use_bias if self.output_bias is None else self.output_bias
        # Keras EinsumDense sublayers, so that Keras' own LoRA (`enable_lora`) and quantization
        # (`quantize("int8")`) reach the attention projections as they reach the feed-forward's Dense layers.
        self.query_dense = self._projection("query", "bsd,dhk->bshk", heads, "hk", self.hidden_dim)
        self.key_dense = self._projection("key", "bsd,dhk->bshk", key_value_heads, "hk", self.key_value_dim)
        self.value_dense = self._projection("value", "bsd,dhk->bshk", key_value_heads, "hk", self.key_value_dim)
        self.output_dense = self._projection("output", "bshk,hkd->bsd", (width,), "d", heads, output_bias)
        self.built = True

    @property
    def projections(self):
        """The four `EinsumDense` projections: query `(d, h, k)`, key and value `(d, h_kv, k)` kernels, output
        `(h, k, d_out)`."""
        return self.query_dense, self.key_dense, self.value_dense, self.output_dense

    def _projection(self, name, equation, output_shape, bias_axes, input_width, use_bias=None):
        # A plain EinsumDense, not a subclass: Keras quantizes only its own layer types (`type(layer) is
        # EinsumDense`).
        layer = keras.layers.EinsumDense(
            equation,
            output_shape=(None,) + tuple(output_shape),
            bias_axes=bias_axes if (self.use_bias if use_bias is None else use_bias) else None,
            kernel_initializer=independent_initializer(self.kernel_initializer, f"{name}/kernel"),
            bias_initializer=independent_initializer(self.bias_initializer, f"{name}/bias"),
            dtype=self.dtype_policy,
            name=name,
        )
        layer.supports_masking = True  # the sequence axis is untouched: a padding mask still holds
        input_width = input_width if isinstance(input_width, tuple) else (input_width,)
        layer.build((None, None) + input_width)
        return layer

    def load_own_variables(self, store):
        """Loads a `.keras` file written before the projections were sublayers: it holds the four kernels
        (query, key, value, output), then the biases, as this layer's own variables."""
        if len(store) == 0:  # the current layout: each projection loads its own variables
            return
        biased = [projection for projection in self.projections if projection.bias is not None]
        expected = 4 + len(biased)
        if len(store) != expected:
            raise ValueError(f"MultiHeadAttention '{self.name}' expected {expected} variables in this file's "
                             f"layout, found {len(store)}: the file was saved from a different layer.")
        for index, projection in enumerate(self.projections):
            projection.kernel.assign(store[str(index)])
            _skip_next_load(projection)
        for index, projection in enumerate(biased):
            projection.bias.assign(store[str(index + 4)])

    def _project_query(self, query):
        """`(b, s, d)` -> `(b, s, h, k)`."""
        return project(self.query_dense, query)

    def _project_key_value(self, key_value):
        """`(b, t, d_kv)` -> keys and values `(b, t, h_kv, k)` each."""
        return project(self.key_dense, key_value), project(self.value_dense, key_value)

    def _project_output(self, context):
        """`(b, s, h, k)` -> `(b, s, d_out)`."""
        return project(self.output_dense, context)

    def call(
        self,
        query,
        key_value=None,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        return_attention_scores=False,
        training=None,
        past_key_value=None,
    ):
        """Attends from `query` to `key_value` (or to itself).

        Args:
            query: float `(b, s, d)`.
            key_value: float `(b, t, d_kv)` or None for self attention.
            padding_mask: bool/int `(b, t)`, True for real keys. With a cache, `t` is
                the cache length.
            attention_mask: bool/int `(b, s, t)`.
            use_causal_mask: bool, mask keys after each query's position.
            attention_bias: float, broadcastable to `(b, h, s, t)`, added to the
                logits before masking (T5 relative position bias).
            cache: float `(b, 2, t_max, h_kv, k)` or None.
            cache_update_index: int or int scalar tensor, where the new keys go.
            return_attention_scores: bool, also return the probabilities.
            training: bool, enables dropout.
            past_key_value: None, or a pair `(keys, values)` of float
                `(b, t_past, h_kv, k)` for self attention; `padding_mask` then covers
                `t = t_past + s` keys. Not combinable with `cache`.

        Returns:
            `outputs` `(b, s, output_dim)`, followed by the updated `cache` when a
            cache was given (or `present` `(keys, values)`, each `(b, t_past + s, h_kv, k)`,
            when `past_key_value` was given), followed by the attention probabilities
            `(b, h, s, t)` when `return_attention_scores` is set.
        """
        self._validate(query, key_value, padding_mask, attention_mask, cache, cache_update_index)
        self._validate_past(past_key_value, key_value, cache)
        if self.sliding_window is not None and (key_value is not None or (
                cache is not None and cache_update_index is None)):
            raise ValueError(f"MultiHeadAttention '{self.name}': `sliding_window` is for self attention; build "
                             "cross attention without it.")
        query_heads = self._project_query(query)  # (b, s, h, k)
        start = 0 if cache_update_index is None else cache_update_index
        present = None
        if past_key_value is not None:
            query_heads, key_heads, value_heads = self._concat_past(query, query_heads, past_key_value)
            present = (key_heads, value_heads)
            start = ops.shape(past_key_value[0])[1]
        elif cache is not None and cache_update_index is None:
            key_heads, value_heads = cache[:, 0], cache[:, 1]  # (b, t, h_kv, k) each
        else:
            source = query if key_value is None else key_value
            key_heads, value_heads = self._project_key_value(source)  # (b, t, h_kv, k) each
            if self.rotary_embedding is not None:
                query_heads = self.rotary_embedding(query_heads, start_index=start)
                key_heads = self.rotary_embedding(key_heads, start_index=start)
            if cache is not None:
                key_heads, value_heads, cache = self._update_cache(
                    cache, key_heads, value_heads, cache_update_index
                )

        query_length, key_length = ops.shape(query_heads)[1], ops.shape(key_heads)[1]
        causal = None
        if use_causal_mask:
            causal = causal_mask(query_length, key_length, start)
        elif cache is not None and cache_update_index is not None:
            # Keys past the newest token are unfilled cache slots: never visible.
            filled = ops.arange(key_length, dtype="int32") < (
                ops.cast(start, "int32") + query_length
            )
            causal = ops.broadcast_to(filled[None, :], (query_length, key_length))
        if self.sliding_window is not None:
            window = sliding_window_mask(query_length, key_length, self.sliding_window, start)
            causal = window if causal is None else ops.logical_and(causal, window)
        mask = combine_masks(padding_mask, attention_mask, causal)
        if return_attention_scores or not self._can_fuse(training):
            outputs, scores = self._attend(query_heads, key_heads, value_heads, mask, attention_bias, training)
        else:
            outputs = self._attend_fused(query_heads, key_heads, value_heads, mask, attention_bias)
        results = (outputs,)
        if cache is not None:
            results += (cache,)
        if present is not None:
            results += (present,)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    def _scale(self):
        return 1.0 / math.sqrt(self.head_dim) if self.attention_scale is None else float(self.attention_scale)

    def _can_fuse(self, training):
        """Whether `_attend_fused` may replace `_attend` (the caller wants no probabilities).

        Only under JAX, where `ops.dot_product_attention` dispatches to cuDNN flash
        attention on NVIDIA GPUs (Ampere and later, fp16/bf16) and to Splash attention on
        TPUs; see `set_fused_attention` for when. Attention dropout during training
        needs the probabilities, so it always keeps the explicit form.
        """
        if keras.backend.backend() != "jax" or (training and self.dropout > 0):
            return False
        if _fused_mode == "never" or keras.config.is_flash_attention_enabled() is False:
            return False
        return _fused_mode == "always" or _jax_on_accelerator()

    def _attend_fused(self, query_heads, key_heads, value_heads, mask, attention_bias):
        """`_attend` through one fused kernel, without materialized probabilities.

        Same contract: the softmax runs in float32 (cuDNN and XLA's reference both do),
        and a query whose keys are all masked gets a zero context. The kernel gives such
        a row the mean of the values (every logit equally masked), so it is zeroed here.
        """
        dtype = query_heads.dtype
        kernel_mask = None
        if mask is not None:
            # Full (b, 1, s, t), the layout cuDNN takes (it turns a mask into an additive bias).
            batch, query_length = ops.shape(query_heads)[0], ops.shape(query_heads)[1]
            mask = ops.broadcast_to(mask, (batch, query_length, ops.shape(key_heads)[1]))
            kernel_mask = mask[:, None, :, :]
        bias = None if attention_bias is None else ops.cast(attention_bias, dtype)
        # Grouped-query attention needs no copies here: the kernel pairs query head i with key/value head
        # i // (h / h_kv) itself.
        context = ops.dot_product_attention(
            query_heads, key_heads, value_heads, bias=bias, mask=kernel_mask, scale=self._scale()
        )  # (b, s, h, k)
        if mask is not None:
            has_key = ops.any(mask, axis=-1)  # (b, s)
            context = context * ops.cast(has_key, dtype)[:, :, None, None]
        return self._project_output(context)

    def _attend(self, query_heads, key_heads, value_heads, mask, attention_bias, training):
        query_heads = query_heads * ops.cast(self._scale(), query_heads.dtype)
        groups = self.num_heads // self.num_key_value_heads
        if groups == 1:
            logits = ops.einsum("bshk,bthk->bhst", query_heads, key_heads)
        else:
            # Group the queries by the key/value head they read, (b, s, h, k) -> (b, s, h_kv, g, k) (n = h_kv):
            # one batched matmul per key/value head, with no copy of the keys.
            batch, query_length = ops.shape(query_heads)[0], ops.shape(query_heads)[1]
            grouped = ops.reshape(query_heads, (batch, query_length, self.num_key_value_heads, groups, self.head_dim))
            logits = ops.einsum("bsngk,btnk->bngst", grouped, key_heads)
            logits = ops.reshape(logits, (batch, self.num_heads, query_length, ops.shape(key_heads)[1]))
        logits = ops.cast(logits, "float32")
        if attention_bias is not None:
            logits = logits + ops.cast(attention_bias, "float32")
        if mask is None:
            probabilities = ops.softmax(logits, axis=-1)  # (b, h, s, t)
        else:
            # Exactly zero on masked keys, so a query with no visible key gets a zero
            # context instead of an average over padding or stale cache slots.
            mask = mask[:, None, :, :]
            logits = ops.where(mask, logits, MASKED_LOGIT)
            probabilities = ops.where(mask, ops.softmax(logits, axis=-1), 0.0)
        probabilities = ops.cast(probabilities, self.compute_dtype)
        dropped = self.dropout_layer(probabilities, training=training)
        if groups == 1:
            context = ops.einsum("bhst,bthk->bshk", dropped, value_heads)
        else:
            shape = ops.shape(dropped)  # (b, h, s, t) -> (b, h_kv, g, s, t)
            dropped = ops.reshape(dropped, (shape[0], self.num_key_value_heads, groups, shape[2], shape[3]))
            context = ops.einsum("bngst,btnk->bsngk", dropped, value_heads)
            context = ops.reshape(context, (shape[0], shape[2], self.num_heads, self.head_dim))
        return self._project_output(context), probabilities  # (b, s, d_out), (b, h, s, t)

    def _update_cache(self, cache, key_heads, value_heads, index):
        # Keys and values written in one update of the (b, 2, t_max, h_kv, k) cache, then read back as views:
        # writing each half and stacking them again copied the whole cache once more per layer and step.
        update = ops.stack([key_heads, value_heads], axis=1)  # (b, 2, s, h_kv, k)
        cache = write_at(cache, index, update, axis=2)
        return cache[:, 0], cache[:, 1], cache

    def _concat_past(self, query, query_heads, past_key_value):
        """Queries, keys and values `(b, s|t, h, k)` of the self-attention past path.

        The queries and the new keys are rotated (rotary models) from position
        `t_past`; the new keys/values follow the past ones along the time axis:
        `(b, t_past, h_kv, k)` + `(b, s, h_kv, k)` -> `(b, t_past + s, h_kv, k)`.
        """
        past_keys, past_values = past_key_value
        past_length = ops.shape(past_keys)[1]
        key_heads, value_heads = self._project_key_value(query)  # (b, s, h_kv, k) each
        if self.rotary_embedding is not None:
            query_heads = self.rotary_embedding(query_heads, start_index=past_length)
            key_heads = self.rotary_embedding(key_heads, start_index=past_length)
        key_heads = ops.concatenate([ops.cast(past_keys, key_heads.dtype), key_heads], axis=1)
        value_heads = ops.concatenate([ops.cast(past_values, value_heads.dtype), value_heads], axis=1)
        return query_heads, key_heads, value_heads

    def _validate_past(self, past_key_value, key_value, cache):
        if past_key_value is None:
            return
        if cache is not None or key_value is not None:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': `past_key_value` is for self attention without "
                "a `cache`; pass either a `cache` (fixed buffer) or `past_key_value` (growing), and no "
                "`key_value`."
            )
        if not isinstance(past_key_value, (tuple, list)) or len(past_key_value) != 2:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': `past_key_value` must be a pair (keys, values), "
                f"got {type(past_key_value).__name__}."
            )
        expected = (self.num_key_value_heads, self.head_dim)
        for name, tensor in zip(("keys", "values"), past_key_value, strict=True):
            _checks.check_rank(f"past_key_value {name}", tensor, 4, self)
            got = tuple(tensor.shape[2:])
            if any(g is not None and g != e for g, e in zip(got, expected, strict=True)):
                raise ValueError(
                    f"MultiHeadAttention '{self.name}': past {name} must have shape (batch, past_length, "
                    f"{self.num_key_value_heads}, {self.head_dim}), got {tuple(tensor.shape)}."
                )

    def empty_past(self, batch_size, dtype=None):
        """Zero-length past `(keys, values)`, each `(batch_size, 0, h_kv, k)`: a prefill pass."""
        if not self.built:
            raise ValueError(
                f"MultiHeadAttention '{self.name}' is not built yet; call it once (or "
                "build it) before creating a past."
            )
        shape = (batch_size, 0, self.num_key_value_heads, self.head_dim)
        empty = ops.zeros(shape, dtype or self.compute_dtype)
        return empty, empty

    def compute_cache(self, key_value):
        """Projects `key_value` `(b, t, d_kv)` once into a fixed cache `(b, 2, t, h_kv, k)`.

        Used for cross attention while decoding: the encoder outputs do not change
        between steps, so their keys and values are computed once.
        """
        if not self.built:
            raise ValueError(
                f"MultiHeadAttention '{self.name}' is not built yet; call it once (or "
                "build it) before computing a cache."
            )
        _checks.check_rank("key_value", key_value, 3, self)
        return ops.stack(self._project_key_value(key_value), axis=1)

    def empty_cache(self, batch_size, max_length, dtype=None):
        """Zeros `(batch_size, 2, max_length, h_kv, k)` to fill during decoding."""
        if not self.built:
            raise ValueError(
                f"MultiHeadAttention '{self.name}' is not built yet; call it once (or "
                "build it) before creating a cache."
            )
        shape = (batch_size, 2, max_length, self.num_key_value_heads, self.head_dim)
        return ops.zeros(shape, dtype or self.compute_dtype)

    def _validate(self, query, key_value, padding_mask, attention_mask, cache, cache_update_index):
        _checks.check_rank("query", query, 3, self)
        _checks.check_last_dim("query", query, self.hidden_dim, self, "Use one width per layer.")
        if key_value is not None:
            _checks.check_rank("key_value", key_value, 3, self)
            _checks.check_last_dim("key_value", key_value, self.key_value_dim, self)
        if padding_mask is not None:
            _checks.check_rank("padding_mask", padding_mask, 2, self)
        if attention_mask is not None:
            _checks.check_rank("attention_mask", attention_mask, 3, self)
        if cache_update_index is not None and cache is None:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': `cache_update_index` was given without "
                "a `cache`; pass both (see `empty_cache`) or neither."
            )
        if cache is not None:
            _checks.check_rank("cache", cache, 5, self)
            expected = (2, self.num_key_value_heads, self.head_dim)
            got = (cache.shape[1], cache.shape[3], cache.shape[4])
            if any(g is not None and g != e for g, e in zip(got, expected, strict=True)):
                raise ValueError(
                    f"MultiHeadAttention '{self.name}': `cache` must have shape (batch, 2, "
                    f"max_length, {self.num_key_value_heads}, {self.head_dim}), got {tuple(cache.shape)}."
                )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "output_dim": self.output_dim,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "attention_scale": self.attention_scale,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "rotary_dim": self.rotary_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "num_key_value_heads": self.num_key_value_heads,
                "output_bias": self.output_bias,
                "sliding_window": self.sliding_window,
                "rotary_scaling": self.rotary_scaling,
            }
        )
        return config


FUSED_ATTENTION_MODES = ("auto", "always", "never")
_fused_mode = "auto"


def set_fused_attention(mode):
    """Chooses when `MultiHeadAttention` runs one fused `ops.dot_product_attention` call (JAX only).

    Args:
        mode: "auto" (default): on GPUs and TPUs, where fused kernels exist; on CPUs the
            op would fall back to XLA's reference, which computes the explicit form at
            the same speed (measured within +-3%), so CPUs keep the explicit form that
            the TensorFlow backend and every export use. "always": on any device (the
            tests use it to check the fused path on CPUs). "never": the explicit form.
            `keras.config.disable_flash_attention()` also means "never".

    Returns:
        The previous mode, so that a caller can restore it.
    """
    global _fused_mode
    if mode not in FUSED_ATTENTION_MODES:
        raise ValueError(f"set_fused_attention: mode must be one of {FUSED_ATTENTION_MODES}, got {mode!r}.")
    previous, _fused_mode = _fused_mode, mode
    return previous


def _jax_on_accelerator():
    """True when JAX's default device is a GPU or TPU (where fused attention kernels exist)."""
    import jax

    return jax.devices()[0].platform in ("gpu", "tpu")


def _skip_next_load(layer):
    """Makes Keras' next `layer.load_own_variables(store)` call (the file has nothing for the sublayer: its values
    came with the parent's) a no-op, once; the layer's own method is back afterwards."""

    def skip_once(store):
        del layer.load_own_variables

    layer.load_own_variables = skip_once
