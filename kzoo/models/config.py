"""The config dataclass base: one per model family, fields = backbone arguments.

A config validates its fields when it is created (positive sizes, heads that divide the
width, known option names), with messages that name the field; each backbone builds its
config from its arguments first, so a bad size is refused before a layer is made. A
config also counts its backbone's parameters analytically (`parameter_count`), without
building anything: `kzoo.saving` compares that count with the weights a `.keras` file
holds before Keras builds the model.
"""

import dataclasses
import math

from kzoo.layers.feed_forward import ACTIVATIONS
from kzoo.layers.normalization import NORM_TYPES


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and options of one model family; presets are named instances.

    Its fields are exactly the backbone's constructor arguments, so
    `Backbone(**config.to_dict())` builds the model and Keras' own `get_config` /
    `from_config` round-trip it unchanged. Creating one validates it (ValueError
    naming the field).
    """

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises ValueError naming the first invalid field; subclasses add their rules."""

    def parameter_count(self):
        """The backbone's parameter count, computed from the fields (nothing is built)."""
        raise NotImplementedError

    def to_dict(self):
        return dataclasses.asdict(self)

    def replace(self, **overrides):
        """A copy with some fields changed; unknown names raise with the valid list."""
        valid = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no field(s) {unknown}; valid fields are {valid}."
            )
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_arguments(cls, arguments):
        """The config of a backbone's constructor `arguments` (a dict; other keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in arguments.items() if name in names})

    # === Checks shared by the families (messages name the class and the field) ===

    def _fail(self, message):
        raise ValueError(f"{type(self).__name__}: {message}")

    def _positive_ints(self, *names):
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                self._fail(f"`{name}` must be a positive integer, got {value!r}.")

    def _optional_positive_int(self, name):
        if getattr(self, name) is not None:
            self._positive_ints(name)

    def _rates(self, *names):
        for name in names:
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value < 1.0:
                self._fail(f"`{name}` must be a rate in [0, 1), got {value!r}.")

    def _positive_numbers(self, *names):
        for name in names:
            value = getattr(self, name)
            if not _is_number(value) or not value > 0 or not math.isfinite(value):
                self._fail(f"`{name}` must be a finite number > 0, got {value!r}.")

    def _choice(self, name, choices):
        value = getattr(self, name)
        if not isinstance(value, str) or value not in choices:
            self._fail(f"unknown `{name}`={value!r}; valid values are {sorted(choices)}.")

    def _bools(self, *names):
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, bool):
                self._fail(f"`{name}` must be true or false, got {value!r}.")

    def _heads_divide_width(self, key_dim=None):
        if key_dim is None and self.hidden_dim % self.num_heads:
            divisors = [d for d in range(1, min(self.hidden_dim, 4096) + 1) if self.hidden_dim % d == 0]
            self._fail(
                f"`hidden_dim`={self.hidden_dim} is not divisible by `num_heads`={self.num_heads}; choose "
                f"`num_heads` among {divisors}" + (" or set `key_dim`." if hasattr(self, "key_dim") else ".")
            )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# === Parameter counts of the kzoo layers (d width, h heads, k head dim, f feed-forward width) ===


def norm_parameters(hidden_dim, norm_type="layer"):
    """`LayerNorm` (scale and bias) or `RMSNorm` (scale)."""
    return 2 * hidden_dim if norm_type == "layer" else hidden_dim


def attention_parameters(hidden_dim, num_heads, head_dim, use_bias=True, num_key_value_heads=None, output_bias=None):
    """`MultiHeadAttention`: query kernel `(d, h, k)`, key/value kernels `(d, h_kv, k)` (h_kv = `num_key_value_heads`,
    None: h), output kernel `(h, k, d)`; query/key/value biases with `use_bias`, the output bias with `output_bias`
    (None: `use_bias`)."""
    width = num_heads * head_dim
    key_value_width = (num_key_value_heads or num_heads) * head_dim
    output_bias = use_bias if output_bias is None else output_bias
    kernels = 2 * hidden_dim * width + 2 * hidden_dim * key_value_width
    return kernels + ((width + 2 * key_value_width) if use_bias else 0) + (hidden_dim if output_bias else 0)


def feed_forward_parameters(hidden_dim, intermediate_dim, gated=False, use_bias=True):
    """`FeedForward`: up `(d, f)`, optional gate `(d, f)`, down `(f, d)`, biases."""
    ups = 2 if gated else 1
    count = (ups + 1) * hidden_dim * intermediate_dim
    return count + ((ups * intermediate_dim + hidden_dim) if use_bias else 0)


def embedding_parameters(vocabulary_size, hidden_dim, pad_to_multiple_of=1, tie_weights=True):
    """`TokenEmbedding`: the `(rows, d)` table, and a `(d, rows)` output projection when untied."""
    rows = -(-vocabulary_size // pad_to_multiple_of) * pad_to_multiple_of
    return rows * hidden_dim * (1 if tie_weights else 2)


def dense_parameters(inputs, units, use_bias=True):
    return inputs * units + (units if use_bias else 0)
