"""Position-wise feed-forward network, plain or gated."""

import keras
from keras import ops

from kzoo.layers import _checks
from kzoo.layers.initializers import independent_initializer


def _gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


def _gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


ACTIVATIONS = {
    "relu": keras.activations.relu,
    "gelu": _gelu_exact,
    "gelu_tanh": _gelu_tanh,
    "silu": keras.activations.silu,
}


@keras.saving.register_keras_serializable(package="kzoo")
class FeedForward(keras.layers.Layer):
    """Two-layer MLP applied to every position, optionally gated.

    Plain: `down(act(up(x)))` (original Transformer: relu; BERT/GPT-2: gelu/gelu_tanh).
    Gated (Shazeer 2020): `down(act(gate(x)) * up(x))`: GEGLU is `activation="gelu",
    gated=True`, SwiGLU is `"silu"` gated, T5 v1.1 is `"gelu_tanh"` gated.

    Args:
        intermediate_dim: int, width of the hidden layer.
        activation: one of "relu", "gelu" (exact erf), "gelu_tanh" (tanh
            approximation, GPT-2's "gelu_new"), "silu".
        gated: bool, use the gated form with an extra `gate` projection.
        output_dim: int or None, output width; None means the input width.
        use_bias: bool, biases on the projections (False for T5).
        dropout: float, dropout on the hidden activations (T5 places it there).
        kernel_initializer, bias_initializer: initializers of the projections.

    Call: `inputs` float `(b, s, d)` -> `(b, s, output_dim or d)`.
    """

    def __init__(
        self,
        intermediate_dim,
        activation="gelu",
        gated=False,
        output_dim=None,
        use_bias=True,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checks.check_positive_int("intermediate_dim", intermediate_dim, self.name)
        _checks.check_positive_int("output_dim", output_dim, self.name, allow_none=True)
        _checks.check_choice("activation", activation, ACTIVATIONS, self.name)
        _checks.check_rate("dropout", dropout, self.name)
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.gated = gated
        self.output_dim = output_dim
        self.use_bias = use_bias
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=independent_initializer(self.kernel_initializer, f"{name}/kernel"),
            bias_initializer=independent_initializer(self.bias_initializer, f"{name}/bias"),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        if inputs_shape[-1] is None:
            raise ValueError(
                f"FeedForward '{self.name}': the last axis of `inputs` must be known, got "
                f"shape {tuple(inputs_shape)}."
            )
        self.hidden_dim = int(inputs_shape[-1])
        self.up_dense = self._dense(self.intermediate_dim, "up")
        self.up_dense.build(inputs_shape)
        if self.gated:
            self.gate_dense = self._dense(self.intermediate_dim, "gate")
            self.gate_dense.build(inputs_shape)
        self.down_dense = self._dense(self.output_dim or self.hidden_dim, "down")
        self.down_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        activation = ACTIVATIONS[self.activation]
        # Every position as one row, (b·s, d): a 2-D matmul, its bias and the activation are what TensorFlow's graph
        # optimizer fuses into one oneDNN matmul (a Dense on (b, s, d) runs as reshape, matmul, reshape, then a
        # separate bias add and activation). XLA compiles both forms alike.
        leading = ops.shape(inputs)[:-1]
        rows = ops.reshape(inputs, (-1, self.hidden_dim))
        if self.gated:
            hidden = activation(self.gate_dense(rows)) * self.up_dense(rows)
        else:
            hidden = activation(self.up_dense(rows))  # (b·s, intermediate_dim)
        hidden = self.dropout_layer(hidden, training=training)
        outputs = self.down_dense(hidden)
        return ops.reshape(outputs, tuple(leading) + (ops.shape(outputs)[-1],))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.output_dim or inputs_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "gated": self.gated,
                "output_dim": self.output_dim,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
