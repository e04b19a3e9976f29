"""Token, segment and position embeddings.

Legend for shape comments: b batch, s sequence length, d hidden size, h heads,
k head dim, V vocabulary size.
"""

import math

import keras
import numpy as np
from keras import ops

from kzoo.layers import _checks
from kzoo.layers.initializers import independent_initializer


@keras.saving.register_keras_serializable(package="kzoo")
class TokenEmbedding(keras.layers.Layer):
    """Maps token ids to vectors, and (tied) vectors back to vocabulary logits.

    `call(ids)` looks up rows of a `(vocabulary_size, hidden_dim)` table;
    `call(hidden, reverse=True)` projects hidden states onto the same table
    (`hidden @ table^T`), the weight tying of BERT, GPT-2 and T5 v1.0. With
    `tie_weights=False` the reverse projection has its own `(hidden_dim, V)` kernel
    (T5 v1.1 style).

    Ids are checked to lie in `[0, vocabulary_size)` wherever the values can be seen
    (eager calls raise ValueError, TensorFlow graphs assert); a GPU gather would
    otherwise return zeros for an out-of-range id.

    Args:
        vocabulary_size: int, number of token ids (the rows of the table before padding).
        hidden_dim: int, size of each embedding vector.
        tie_weights: bool, whether `reverse=True` reuses the embedding table.
        embeddings_initializer: initializer of the table.
        mask_zero: bool, whether id 0 is padding; the output then carries a Keras mask
            `ids != 0` that downstream kzoo layers use as their padding mask.
        embeddings_scale: float, multiplies looked-up vectors (the original
            Transformer uses `sqrt(hidden_dim)`).
        logits_scale: float, multiplies hidden states before the reverse projection
            (T5 v1.0 uses `hidden_dim ** -0.5` with tied weights).
        pad_to_multiple_of: int, the table gets `vocabulary_size` rounded up to a
            multiple of this many rows (nanoGPT's 50257 -> 50304 with 64), so that the
            `(d, V)` matmul of the reverse projection has a width GPU kernels tile
            without a ragged edge. The extra rows are never looked up (ids are checked
            against `vocabulary_size`) and the logits are cut back to `vocabulary_size`
            columns, so nothing outside the layer sees them. 1 (default): no padding.

    Example:
        >>> emb = TokenEmbedding(vocabulary_size=100, hidden_dim=8)
        >>> hidden = emb(np.array([[1, 2, 3]]))           # (1, 3, 8)
        >>> logits = emb(hidden, reverse=True)             # (1, 3, 100)
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        tie_weights=True,
        embeddings_initializer="glorot_uniform",
        mask_zero=False,
        embeddings_scale=1.0,
        logits_scale=1.0,
        pad_to_multiple_of=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.check_positive_int("vocabulary_size", vocabulary_size, self.name)
        _checks.check_positive_int("hidden_dim", hidden_dim, self.name)
        _checks.check_positive_int("pad_to_multiple_of", pad_to_multiple_of, self.name)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.table_rows = -(-vocabulary_size // pad_to_multiple_of) * pad_to_multiple_of
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.tie_weights = tie_weights
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.mask_zero = mask_zero
        self.embeddings_scale = float(embeddings_scale)
        self.logits_scale = float(logits_scale)
        self.supports_masking = mask_zero

    def build(self, inputs_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.table_rows, self.hidden_dim),
            initializer=independent_initializer(self.embeddings_initializer, "embeddings"),
        )
        if not self.tie_weights:
            self.reverse_embeddings = self.add_weight(
                name="reverse_embeddings",
                shape=(self.hidden_dim, self.table_rows),
                initializer=independent_initializer(self.embeddings_initializer, "reverse_embeddings"),
            )
        self.built = True

    def call(self, inputs, reverse=False):
        """Embeds ids, or projects hidden states to logits.

        Args:
            inputs: `reverse=False`: int ids `(b, s)` (any rank). `reverse=True`: float
                hidden states `(..., hidden_dim)`.
            reverse: bool, project to vocabulary logits instead of embedding.

        Returns:
            `reverse=False`: `(b, s, hidden_dim)` in the compute dtype.
            `reverse=True`: logits `(..., vocabulary_size)` in the compute dtype.
        """
        if reverse:
            _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
            if self.logits_scale != 1.0:
                inputs = inputs * self.logits_scale
            logits = ops.matmul(inputs, self.reverse_kernel())  # (..., d) @ (d, R) -> (..., R)
            if self.table_rows != self.vocabulary_size:
                logits = logits[..., : self.vocabulary_size]  # drop the padding rows' columns
            return logits
        if "int" not in str(inputs.dtype):
            raise ValueError(
                f"TokenEmbedding '{self.name}': `inputs` must be integer token ids, got "
                f"dtype {inputs.dtype}. To project hidden states to logits pass "
                "`reverse=True`."
            )
        inputs = _checks.check_ids_in_range("inputs", inputs, self.vocabulary_size, self)
        outputs = ops.take(ops.cast(self.embeddings, self.compute_dtype), inputs, axis=0)
        return outputs * self.embeddings_scale if self.embeddings_scale != 1.0 else outputs

    def reverse_kernel(self):
        """The `(hidden_dim, table_rows)` matrix that `reverse=True` multiplies (the scaled
        hidden states) by, in the compute dtype: the transposed table, or the untied kernel.
        Columns past `vocabulary_size` are padding. Chunked losses use it to project without
        forming the logits (`kzoo.models.losses`)."""
        if self.tie_weights:
            return ops.transpose(ops.cast(self.embeddings, self.compute_dtype))
        return ops.cast(self.reverse_embeddings, self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero or "int" not in str(inputs.dtype):
            return None
        return ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "tie_weights": self.tie_weights,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "mask_zero": self.mask_zero,
                "embeddings_scale": self.embeddings_scale,
                "logits_scale": self.logits_scale,
                "pad_to_multiple_of": self.pad_to_multiple_of,
            }
        )
        return config


SEGMENT_FIXED_ARGUMENTS = (
    "vocabulary_size", "tie_weights", "mask_zero", "embeddings_scale", "logits_scale", "pad_to_multiple_of"
)


@keras.saving.register_keras_serializable(package="kzoo")
class SegmentEmbedding(TokenEmbedding):
    """Segment (token type) embedding: ids in `[0, num_segments)` to vectors.

    BERT adds one of two learned vectors to each token to mark sentence A or B.
    Same contract as `TokenEmbedding` with `vocabulary_size=num_segments`, untied.

    Args:
        num_segments: int, number of segment types (2 for BERT).
        hidden_dim: int, embedding size.
        embeddings_initializer: initializer of the table.
    """

    def __init__(self, num_segments, hidden_dim, embeddings_initializer="glorot_uniform", **kwargs):
        for key in SEGMENT_FIXED_ARGUMENTS:
            kwargs.pop(key, None)
        super().__init__(
            vocabulary_size=num_segments,
            hidden_dim=hidden_dim,
            tie_weights=True,
            embeddings_initializer=embeddings_initializer,
            mask_zero=False,
            **kwargs,
        )
        self.num_segments = num_segments

    def call(self, inputs):
        """Args: int segment ids `(b, s)`. Returns `(b, s, hidden_dim)`."""
        return super().call(inputs)

    def get_config(self):
        config = super().get_config()
        for key in SEGMENT_FIXED_ARGUMENTS:
            config.pop(key)
        config["num_segments"] = self.num_segments
        return config


class _PositionalBase(keras.layers.Layer):
    """Shared input handling of position layers: they read only the shape of `inputs`."""

    _max_sequence_length_optional = False

    def __init__(self, max_sequence_length, **kwargs):
        super().__init__(**kwargs)
        _checks.check_positive_int(
            "max_sequence_length", max_sequence_length, self.name, self._max_sequence_length_optional
        )
        self.max_sequence_length = max_sequence_length
        self.supports_masking = True

    def _checked_positions(self, inputs, start_index):
        """Returns `(sequence_length, start_index)` once they fit `max_sequence_length`."""
        _checks.check_rank("inputs", inputs, 3, self)
        sequence_length = ops.shape(inputs)[1]
        start_index = _checks.check_sequence_fits(
            sequence_length, start_index, self.max_sequence_length, self, "a sequence"
        )
        return sequence_length, start_index

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config["max_sequence_length"] = self.max_sequence_length
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class PositionEmbedding(_PositionalBase):
    """Learned absolute position embedding (BERT, GPT-2, BART).

    Returns the embeddings of positions `start_index .. start_index + s - 1` broadcast
    to the shape of `inputs`; add them to the token embeddings yourself.

    Args:
        max_sequence_length: int, number of positions learned; longer inputs raise
            ValueError (never a silent wrap or a zero vector).
        initializer: initializer of the `(max_sequence_length, hidden_dim)` table.
        position_offset: int, rows skipped before position 0 (BART stores 2 extra
            rows in front; the table then has `max_sequence_length + position_offset`
            rows).
    """

    def __init__(self, max_sequence_length, initializer="glorot_uniform", position_offset=0, **kwargs):
        super().__init__(max_sequence_length, **kwargs)
        if not isinstance(position_offset, int) or position_offset < 0:
            raise ValueError(
                f"{self.name}: `position_offset` must be a non-negative int, got {position_offset!r}."
            )
        self.initializer = keras.initializers.get(initializer)
        self.position_offset = position_offset

    def build(self, inputs_shape):
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(
                f"PositionEmbedding '{self.name}': `inputs` must be (batch, sequence, "
                f"hidden) with a known hidden size, got shape {tuple(inputs_shape)}."
            )
        self.hidden_dim = int(inputs_shape[-1])
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_sequence_length + self.position_offset, self.hidden_dim),
            initializer=independent_initializer(self.initializer, "embeddings"),
        )
        self.built = True

    def call(self, inputs, start_index=0):
        """Args:
            inputs: float `(b, s, d)`, usually the token embeddings; only its shape is used.
            start_index: int or int scalar tensor, position of the first token (the
                KV-cache index while decoding).

        Returns:
            `(b, s, d)` position embeddings in the compute dtype.
        """
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        length, start_index = self._checked_positions(inputs, start_index)
        table = ops.cast(self.position_embeddings, self.compute_dtype)
        start = ops.cast(start_index, "int32") + self.position_offset
        positions = ops.slice(table, (start, 0), (length, self.hidden_dim))  # (s, d)
        return ops.broadcast_to(positions[None], ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "initializer": keras.initializers.serialize(self.initializer),
                "position_offset": self.position_offset,
            }
        )
        return config


SINUSOIDAL_LAYOUTS = ("interleaved", "split")


def sinusoidal_table(num_positions, hidden_dim, max_wavelength=10000.0, layout="interleaved"):
    """float64 NumPy `(num_positions, hidden_dim)` sinusoidal encodings (hidden_dim even).

    The frequencies are those of the paper, `1 / max_wavelength^(2i/d)`, i < d/2.
    "interleaved" puts `sin` at even and `cos` at odd features (the paper);
    "split" puts every `sin` in the first half and every `cos` in the second
    (Marian / OPUS-MT, `MarianSinusoidalPositionalEmbedding` in transformers).
    """
    exponents = np.arange(0, hidden_dim, 2, dtype="float64") / hidden_dim  # (d/2,)
    angles = np.arange(num_positions, dtype="float64")[:, None] / max_wavelength ** exponents[None]  # (n, d/2)
    if layout == "split":
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(num_positions, hidden_dim)


@keras.saving.register_keras_serializable(package="kzoo")
class SinusoidalPositionEmbedding(_PositionalBase):
    """Fixed sinusoidal position encoding of "Attention Is All You Need" (sec. 3.5).

    `PE[p, 2i] = sin(p / max_wavelength^(2i/d))`, `PE[p, 2i+1] = cos(same)`, with sine
    and cosine interleaved as in the paper (`layout="interleaved"`); `layout="split"`
    puts the d/2 sines first and the d/2 cosines after them (Marian). No weights by
    default: the encodings are computed in float32 on every call. With
    `stored=True` the layer keeps them as a frozen (non-trainable) `(max_sequence_length,
    d)` table computed once in float64, as transformers' Marian does, so the layer holds
    (and counts) the same values as such a checkpoint.

    Args:
        max_sequence_length: int, longest sequence accepted (with `stored=True`, the rows
            of the table).
        max_wavelength: float, the base (10000 in the paper).
        layout: "interleaved" (default) or "split", see above.
        stored: bool, keep the encodings as a frozen weight named "table".
    """

    def __init__(self, max_sequence_length, max_wavelength=10000.0, layout="interleaved", stored=False, **kwargs):
        super().__init__(max_sequence_length, **kwargs)
        if layout not in SINUSOIDAL_LAYOUTS:
            raise ValueError(f"{self.name}: `layout` must be one of {SINUSOIDAL_LAYOUTS}, got {layout!r}.")
        if not isinstance(stored, bool):
            raise ValueError(f"{self.name}: `stored` must be true or false, got {stored!r}.")
        self.max_wavelength = max_wavelength
        self.layout = layout
        self.stored = stored

    def build(self, inputs_shape):
        if self.stored:
            hidden_dim = self._hidden_dim(inputs_shape[-1])
            table = sinusoidal_table(self.max_sequence_length, hidden_dim, self.max_wavelength, self.layout)
            self.table = self.add_weight(
                name="table", shape=table.shape, trainable=False,
                initializer=lambda shape, dtype=None: ops.convert_to_tensor(table, dtype=dtype),
            )
        self.built = True

    def _hidden_dim(self, hidden_dim):
        if hidden_dim is None or hidden_dim % 2:
            raise ValueError(
                f"SinusoidalPositionEmbedding '{self.name}': the hidden size (last axis "
                f"of `inputs`) must be a known even number, got {hidden_dim}."
            )
        return int(hidden_dim)

    def call(self, inputs, start_index=0):
        """Args: `inputs` float `(b, s, d)` (shape only; d must be even), `start_index`
        the position of the first token. Returns `(b, s, d)` encodings in the compute dtype.
        """
        sequence_length, start_index = self._checked_positions(inputs, start_index)
        hidden_dim = self._hidden_dim(inputs.shape[-1])
        if self.stored:
            _checks.check_last_dim("inputs", inputs, int(self.table.shape[-1]), self)
            table = ops.cast(self.table, self.compute_dtype)
            encoding = ops.slice(table, (ops.cast(start_index, "int32"), 0), (sequence_length, hidden_dim))  # (s, d)
            return ops.broadcast_to(encoding[None], ops.shape(inputs))
        positions = ops.cast(start_index, "float32") + ops.arange(
            sequence_length, dtype="float32"
        )  # (s,)
        exponents = ops.arange(0, hidden_dim, 2, dtype="float32") / hidden_dim  # (d/2,)
        inverse_frequencies = ops.exp(-math.log(self.max_wavelength) * exponents)
        angles = positions[:, None] * inverse_frequencies[None, :]  # (s, d/2)
        if self.layout == "split":
            encoding = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)  # (s, d)
        else:
            encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)  # (s, d/2, 2)
            encoding = ops.reshape(encoding, (-1, hidden_dim))  # interleave -> (s, d)
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding[None], ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength, "layout": self.layout, "stored": self.stored})
        return config


ROTARY_SCALING_KEYS = {
    # rope_type: (required keys, optional keys) of Hugging Face's `rope_scaling` dict.
    "linear": (("factor",), ()),
    "dynamic": (("factor", "original_max_position_embeddings"), ()),
    "llama3": (("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"), ()),
    "yarn": (
        ("factor", "original_max_position_embeddings"),
        ("attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"),
    ),
}
# Kinds whose trained context (`original_max_position_embeddings`) defaults to the model's `max_sequence_length`
# (Hugging Face's fallback to `max_position_embeddings`).
CONTEXT_KEY = "original_max_position_embeddings"


def rotary_scaling_with_context(scaling, max_sequence_length):
    """`scaling` with `original_max_position_embeddings` set to `max_sequence_length` where it is missing.

    Hugging Face reads the trained context of "dynamic" from the model's `max_position_embeddings`, and of "yarn"
    and "llama3" from it when the scaling dict does not name one; a kzoo backbone passes its `max_sequence_length`.
    """
    if not isinstance(scaling, dict):
        return scaling
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ROTARY_SCALING_KEYS or CONTEXT_KEY not in ROTARY_SCALING_KEYS[kind][0]:
        return scaling  # "linear" takes no context; an unknown kind is refused by `check_rotary_scaling`
    return {CONTEXT_KEY: max_sequence_length, **scaling}


def check_rotary_scaling(scaling, owner):
    """The validated rotary scaling dict (`"type"` renamed `"rope_type"`), or None.

    Args:
        scaling: None or a dict in Hugging Face's `rope_scaling` form, e.g. `{"rope_type": "linear", "factor": 2.0}`.
        owner: str, who is asking (the start of the error message).

    Raises:
        ValueError (one line): not a dict, an unknown `rope_type`, a missing or unknown key, a bad value.
    """
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"{owner}: rotary scaling must be None or a dict like {{'rope_type': 'linear', "
                         f"'factor': 2.0}}, got {type(scaling).__name__}.")
    scaling = dict(scaling)
    if "type" in scaling:  # the older Hugging Face spelling
        kind = scaling.pop("type")
        if scaling.setdefault("rope_type", kind) != kind:
            raise ValueError(f"{owner}: rotary scaling names two kinds, 'type'={kind!r} and "
                             f"'rope_type'={scaling['rope_type']!r}; keep one.")
    kind = scaling.get("rope_type")
    if kind not in ROTARY_SCALING_KEYS:
        raise ValueError(f"{owner}: unknown rotary scaling 'rope_type'={kind!r}; valid kinds are "
                         f"{sorted(ROTARY_SCALING_KEYS)}.")
    required, optional = ROTARY_SCALING_KEYS[kind]
    missing = [key for key in required if scaling.get(key) is None]
    unknown = sorted(set(scaling) - set(required) - set(optional) - {"rope_type"})
    if missing or unknown:
        problem = f"missing key(s) {missing}" if missing else f"unknown key(s) {unknown}"
        raise ValueError(f"{owner}: rotary scaling {kind!r} has {problem}; it takes {list(required)} and "
                         f"optionally {list(optional)}.")
    for key, value in scaling.items():
        if key == "rope_type" or value is None:
            continue
        if key == "truncate":
            if not isinstance(value, bool):
                raise ValueError(f"{owner}: rotary scaling 'truncate' must be true or false, got {value!r}.")
        elif key == CONTEXT_KEY:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{owner}: rotary scaling {key!r} must be a positive integer, got {value!r}.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                value <= 0 and key not in ("mscale", "mscale_all_dim")):
            raise ValueError(f"{owner}: rotary scaling {key!r} must be a finite number > 0, got {value!r}.")
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ValueError(f"{owner}: rotary scaling 'llama3' needs 'high_freq_factor' > 'low_freq_factor', got "
                         f"{scaling['high_freq_factor']} and {scaling['low_freq_factor']}.")
    return scaling


def rotary_inverse_frequencies(rotary_dim, max_wavelength, scaling=None):
    """Inverse frequencies `(r/2,)` (float64 NumPy) and the cos/sin factor of a static rotary scaling.

    Unscaled: `1 / max_wavelength^(2i/r)`. "linear" divides them by `factor` (positions interpolated);
    "llama3" divides the low frequencies (wavelength above `original / low_freq_factor`) by `factor`, keeps
    the high ones (below `original / high_freq_factor`) and blends in between; "yarn" (Peng et al. 2023) blends
    interpolated and extrapolated frequencies over the dimensions whose rotation count within the trained
    context lies between `beta_slow` and `beta_fast`, and scales cos/sin by its attention factor
    (`0.1 ln(factor) + 1` unless given). "dynamic" depends on the sequence length: see `RotaryEmbedding`.

    Returns:
        `(inverse_frequencies, attention_factor)`.
    """
    exponents = np.arange(0, rotary_dim, 2, dtype="float64") / rotary_dim
    inverse = 1.0 / (max_wavelength ** exponents)
    kind = None if scaling is None else scaling["rope_type"]
    if kind in (None, "dynamic"):
        return inverse, 1.0
    factor = float(scaling["factor"])
    if kind == "linear":
        return inverse / factor, 1.0
    context = scaling[CONTEXT_KEY]
    if kind == "llama3":
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelength = 2 * math.pi / inverse
        smooth = (context / wavelength - low) / (high - low)
        blended = (1 - smooth) * inverse / factor + smooth * inverse
        scaled = np.where(wavelength > context / low, inverse / factor, inverse)
        middle = (wavelength <= context / low) & (wavelength >= context / high)
        return np.where(middle, blended, scaled), 1.0
    return _yarn(inverse, rotary_dim, max_wavelength, factor, context, scaling)


def _yarn_mscale(factor, mscale=1.0):
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn(inverse, rotary_dim, max_wavelength, factor, context, scaling):
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = (_yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
                            if mscale and mscale_all_dim else _yarn_mscale(factor))

    def dimension_of(rotations):  # the dimension that turns `rotations` times within the trained context
        return rotary_dim * math.log(context / (rotations * 2 * math.pi)) / (2 * math.log(max_wavelength))

    low, high = dimension_of(scaling.get("beta_fast") or 32), dimension_of(scaling.get("beta_slow") or 1)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    high = high + 0.001 if low == high else high
    ramp = np.clip((np.arange(rotary_dim // 2, dtype="float64") - low) / (high - low), 0, 1)
    extrapolated = 1 - ramp  # share of the unscaled frequency
    return inverse / factor * ramp + inverse * extrapolated, float(attention_factor)


@keras.saving.register_keras_serializable(package="kzoo")
class RotaryEmbedding(_PositionalBase):
    """Rotary position embedding (RoPE, Su et al. 2021), applied to queries or keys.

    Rotates each pair of features `(x_a, x_b)` of a head by the angle
    `p / max_wavelength^(2i/r)` where `p` is the token position and `r` the number of
    rotated features. Pairs are `(i, i + r/2)` ("rotate half", GPT-NeoX / LLaMA /
    Hugging Face layout) or, with `interleaved=True`, `(2i, 2i+1)` (GPT-J layout).
    With `rotary_dim < k` only the first `rotary_dim` features rotate (GPT-NeoX
    partial rotary); the rest pass through.

    Context extension (`scaling`, Hugging Face's `rope_scaling` dict, see
    `rotary_inverse_frequencies`): "linear", "llama3" and "yarn" change the
    frequencies once (yarn also multiplies cos and sin by its attention factor);
    "dynamic" (NTK-aware) raises the base with the sequence length `L` reached, once it
    passes the trained context `c = original_max_position_embeddings`:
    `base * (factor * L / c - factor + 1) ^ (r / (r - 2))`. `L` is
    `start_index + s`, the positions seen so far: a full pass uses its length, and a
    decoding step with a KV cache rotates its new keys by the length reached at that
    step (as transformers' `generate` does), so keys cached earlier keep the angles of
    their step and a cached run beyond `c` differs from one full pass over all tokens.

    Args:
        max_sequence_length: int or None, longest sequence accepted (None: no limit;
            rotary positions extrapolate, though a model may not).
        max_wavelength: float, the base (10000 in the paper).
        rotary_dim: int or None, features rotated per head (even); None rotates all.
        interleaved: bool, pair layout (see above).
        scaling: None or a dict `{"rope_type": "linear"|"dynamic"|"llama3"|"yarn", "factor": ...}`
            with the keys each kind takes (`check_rotary_scaling`); the trained context
            `original_max_position_embeddings` is required by all but "linear".
    """

    _max_sequence_length_optional = True

    def __init__(
        self,
        max_sequence_length=None,
        max_wavelength=10000.0,
        rotary_dim=None,
        interleaved=False,
        scaling=None,
        **kwargs,
    ):
        super().__init__(max_sequence_length, **kwargs)
        _checks.check_positive_int("rotary_dim", rotary_dim, self.name, allow_none=True)
        if rotary_dim is not None and rotary_dim % 2:
            raise ValueError(f"{self.name}: `rotary_dim` must be even, got {rotary_dim}.")
        self.max_wavelength = max_wavelength
        self.rotary_dim = rotary_dim
        self.interleaved = interleaved
        self.scaling = check_rotary_scaling(scaling, f"RotaryEmbedding '{self.name}'")

    def call(self, inputs, start_index=0):
        """Args:
            inputs: float `(b, s, h, k)` queries or keys (or `(b, s, k)`).
            start_index: position of the first token (the KV-cache index while decoding).

        Returns:
            Rotated tensor of the same shape and dtype.
        """
        _checks.check_rank("inputs", inputs, (3, 4), self)
        start_index = _checks.check_sequence_fits(
            ops.shape(inputs)[1], start_index, self.max_sequence_length, self, "a sequence"
        )
        head_dim = inputs.shape[-1]
        rotary_dim = self.rotary_dim or head_dim
        if rotary_dim > head_dim or rotary_dim % 2:
            raise ValueError(
                f"RotaryEmbedding '{self.name}': `rotary_dim`={rotary_dim} must be even and "
                f"at most the head size {head_dim}."
            )
        rotated, passed = inputs[..., :rotary_dim], inputs[..., rotary_dim:]
        cos, sin = self._cos_sin(ops.shape(inputs)[1], start_index, rotary_dim, len(inputs.shape))
        x = ops.cast(rotated, "float32")
        if self.interleaved:
            pairs = ops.reshape(x, ops.shape(x)[:-1] + (rotary_dim // 2, 2))
            x_even, x_odd = pairs[..., 0], pairs[..., 1]
            out = ops.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
            out = ops.reshape(out, ops.shape(x))
        else:
            x_first, x_second = x[..., : rotary_dim // 2], x[..., rotary_dim // 2 :]
            out = ops.concatenate(
                [x_first * cos - x_second * sin, x_second * cos + x_first * sin], axis=-1
            )
        out = ops.cast(out, inputs.dtype)
        if rotary_dim == head_dim:
            return out
        return ops.concatenate([out, passed], axis=-1)

    def inverse_frequencies(self, rotary_dim, sequence_length=None):
        """The float32 inverse frequencies `(r/2,)` for `rotary_dim` rotated features and their cos/sin factor.

        `sequence_length` (int or int scalar tensor, the positions seen so far) matters only for "dynamic"
        scaling. Returns `(inverse_frequencies, attention_factor)`.
        """
        exponents = ops.arange(0, rotary_dim, 2, dtype="float32") / rotary_dim  # (r/2,)
        kind = None if self.scaling is None else self.scaling["rope_type"]
        if kind is None:
            return ops.exp(-math.log(self.max_wavelength) * exponents), 1.0
        if kind == "dynamic":
            if rotary_dim <= 2:
                raise ValueError(f"RotaryEmbedding '{self.name}': 'dynamic' scaling needs more than 2 rotated "
                                 f"features per head, got {rotary_dim}.")
            factor, context = float(self.scaling["factor"]), self.scaling[CONTEXT_KEY]
            length = ops.maximum(ops.cast(sequence_length, "float32"), float(context))
            growth = (factor * length / context - (factor - 1.0)) ** (rotary_dim / (rotary_dim - 2))
            log_base = math.log(self.max_wavelength) + ops.log(growth)
            return ops.exp(-log_base * exponents), 1.0
        inverse, attention_factor = rotary_inverse_frequencies(rotary_dim, self.max_wavelength, self.scaling)
        return ops.convert_to_tensor(inverse.astype("float32")), attention_factor

    def _cos_sin(self, sequence_length, start_index, rotary_dim, rank):
        """Cosines and sines `(1, s, [1,] r/2)` in float32 for broadcasting."""
        positions = ops.cast(start_index, "float32") + ops.arange(sequence_length, dtype="float32")
        inverse_frequencies, attention_factor = self.inverse_frequencies(
            rotary_dim, ops.cast(start_index, "int32") + sequence_length)
        angles = positions[:, None] * inverse_frequencies[None, :]  # (s, r/2)
        angles = angles[None, :, None, :] if rank == 4 else angles[None]
        if attention_factor == 1.0:
            return ops.cos(angles), ops.sin(angles)
        return ops.cos(angles) * attention_factor, ops.sin(angles) * attention_factor

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "rotary_dim": self.rotary_dim,
                "interleaved": self.interleaved,
                "scaling": self.scaling,
            }
        )
        return config
