"""Layer normalization and RMS normalization with float32 statistics.

Both compute their statistics in float32 whatever the compute dtype, so they stay
exact under `mixed_float16` / `mixed_bfloat16`, then cast back.
"""

import keras
from keras import ops

from kzoo.layers import _checks


class _Normalization(keras.layers.Layer):
    """Shared build and config of the normalizations over the last axis."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if not float(epsilon) > 0:
            raise ValueError(f"{self.name}: `epsilon` must be > 0, got {epsilon!r}.")
        self.epsilon = epsilon
        self.supports_masking = True

    def build(self, inputs_shape):
        if inputs_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}': the last axis of `inputs` must "
                f"be known, got shape {tuple(inputs_shape)}."
            )
        self.hidden_dim = int(inputs_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(self.hidden_dim,), initializer="ones")
        self._build_extra()
        self.built = True

    def _build_extra(self):
        pass

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class LayerNorm(_Normalization):
    """Layer normalization over the last axis (Ba et al. 2016).

    `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, statistics in float32.

    Args:
        epsilon: float > 0 (BERT 1e-12, GPT-2 and BART 1e-5).
        use_bias: bool, learn the additive `bias` (False gives a scale-only norm).

    Call: `inputs` float `(..., d)` -> same shape and compute dtype.
    """

    def __init__(self, epsilon=1e-5, use_bias=True, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.use_bias = use_bias

    def _build_extra(self):
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.hidden_dim,), initializer="zeros")

    def call(self, inputs):
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        x = ops.cast(inputs, "float32")
        mean = ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * ops.rsqrt(variance + self.epsilon) * ops.cast(self.scale, "float32")
        if self.use_bias:
            y = y + ops.cast(self.bias, "float32")
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["use_bias"] = self.use_bias
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class RMSNorm(_Normalization):
    """Root-mean-square normalization (Zhang & Sennrich 2019), as in T5.

    `y = x / sqrt(mean(x^2) + epsilon) * scale`: no mean subtraction, no bias.

    Args:
        epsilon: float > 0 (T5 1e-6).

    Call: `inputs` float `(..., d)` -> same shape and compute dtype.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)

    def call(self, inputs):
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        x = ops.cast(inputs, "float32")
        mean_square = ops.mean(ops.square(x), axis=-1, keepdims=True)
        y = x * ops.rsqrt(mean_square + self.epsilon) * ops.cast(self.scale, "float32")
        return ops.cast(y, self.compute_dtype)


def get_normalization(norm_type, epsilon, name, dtype):
    """Builds a `LayerNorm` ("layer") or `RMSNorm` ("rms") for the blocks."""
    _checks.check_choice("norm_type", norm_type, NORM_TYPES, name)
    if norm_type == "rms":
        return RMSNorm(epsilon=epsilon, name=name, dtype=dtype)
    return LayerNorm(epsilon=epsilon, name=name, dtype=dtype)


NORM_TYPES = ("layer", "rms")
