"""Task heads that turn backbone hidden states into predictions.

Legend for shape comments: b batch, s sequence length, d hidden size, p number of
predicted (masked) positions, V vocabulary size, c classes.
"""

import keras
from keras import ops

from kzoo.layers import _checks
from kzoo.layers.attention import MASKED_LOGIT
from kzoo.layers.embeddings import TokenEmbedding
from kzoo.layers.feed_forward import ACTIVATIONS
from kzoo.layers.initializers import independent_initializer
from kzoo.layers.normalization import LayerNorm


def _dense(units, name, dtype, kernel_initializer, activation=None):
    return keras.layers.Dense(
        units, activation=activation, kernel_initializer=independent_initializer(kernel_initializer, f"{name}/kernel"),
        dtype=dtype, name=name,
    )


class _Head(keras.layers.Layer):
    """Initializer handling and input checks shared by the heads."""

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _check_hidden(self, inputs_shape, rank):
        if len(inputs_shape) != rank or inputs_shape[-1] is None:
            layout = "(batch, sequence, hidden)" if rank == 3 else "(batch, hidden)"
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}': `inputs` must be {layout} with "
                f"a known hidden size, got shape {tuple(inputs_shape)}."
            )
        self.hidden_dim = int(inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class MaskedLMHead(_Head):
    """BERT masked-LM head: transform, tied projection to the vocabulary, bias.

    `logits = norm(act(dense(h))) @ E^T + b` where `E` is the token embedding table
    of the backbone (weights tied by passing that `TokenEmbedding`). The transform maps
    the hidden size `d` to the table's width `e` (`d` for BERT; ELECTRA's generator has
    embeddings narrower than its encoder). With `mask_positions`, only those positions
    are gathered first, so the vocabulary projection runs on `p` positions instead of all `s`.

    Args:
        token_embedding: the backbone's `TokenEmbedding`; its table is the output
            projection.
        activation: transform activation (BERT: "gelu").
        norm_epsilon: epsilon of the transform's LayerNorm (BERT: 1e-12).
        kernel_initializer: initializer of the transform.

    Call: `inputs` float `(b, s, d)`; `mask_positions` int `(b, p)` or None ->
    logits `(b, p, V)` or `(b, s, V)`.
    """

    def __init__(self, token_embedding, activation="gelu", norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(token_embedding, dict):
            token_embedding = keras.layers.deserialize(token_embedding)
        if not isinstance(token_embedding, TokenEmbedding):
            raise ValueError(
                f"MaskedLMHead '{self.name}': `token_embedding` must be a kzoo "
                f"TokenEmbedding (the backbone's), got {type(token_embedding).__name__}."
            )
        _checks.check_choice("activation", activation, ACTIVATIONS, self.name)
        self.token_embedding = token_embedding
        self.activation = activation
        self.norm_epsilon = norm_epsilon

    def build(self, inputs_shape, mask_positions_shape=None):
        self._check_hidden(inputs_shape, 3)
        width = self.token_embedding.hidden_dim  # (d -> e): the tied table's width
        self.transform = _dense(
            width, "transform", self.dtype_policy, self.kernel_initializer,
            activation=ACTIVATIONS[self.activation],
        )
        self.transform.build(inputs_shape)
        self.norm = LayerNorm(epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm")
        self.norm.build(tuple(inputs_shape[:-1]) + (width,))
        if not self.token_embedding.built:
            self.token_embedding.build()
        self.bias = self.add_weight(
            name="bias", shape=(self.token_embedding.vocabulary_size,), initializer="zeros"
        )
        self.built = True

    def call(self, inputs, mask_positions=None):
        _checks.check_rank("inputs", inputs, 3, self)
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        if mask_positions is not None:
            _checks.check_rank("mask_positions", mask_positions, 2, self)
            inputs = ops.take_along_axis(
                inputs, ops.cast(mask_positions, "int32")[:, :, None], axis=1
            )  # (b, p, d)
        hidden = self.norm(self.transform(inputs))
        logits = self.token_embedding(hidden, reverse=True)  # (b, p, V)
        return logits + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, inputs_shape, mask_positions_shape=None):
        length = inputs_shape[1] if mask_positions_shape is None else mask_positions_shape[1]
        return (inputs_shape[0], length, self.token_embedding.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "token_embedding": keras.layers.serialize(self.token_embedding),
                "activation": self.activation,
                "norm_epsilon": self.norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class Pooler(_Head):
    """BERT pooler: `tanh(dense(h[:, 0]))`, the first ([CLS]) token's summary.

    Call: `inputs` float `(b, s, d)` -> `(b, d)`.
    """

    def build(self, inputs_shape):
        self._check_hidden(inputs_shape, 3)
        self.dense = _dense(
            self.hidden_dim, "dense", self.dtype_policy, self.kernel_initializer, activation="tanh"
        )
        self.dense.build((inputs_shape[0], self.hidden_dim))
        self.built = True

    def call(self, inputs):
        _checks.check_rank("inputs", inputs, 3, self)
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        return self.dense(inputs[:, 0, :])

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], inputs_shape[-1])


class _ClassifierHead(_Head):
    """Dropout, optional `tanh` hidden layer, then a projection to `num_classes`."""

    rank = 2

    def __init__(self, num_classes, dropout=0.0, intermediate_dim=None, **kwargs):
        super().__init__(**kwargs)
        _checks.check_positive_int("num_classes", num_classes, self.name)
        _checks.check_positive_int("intermediate_dim", intermediate_dim, self.name, allow_none=True)
        _checks.check_rate("dropout", dropout, self.name)
        self.num_classes = num_classes
        self.dropout = dropout
        self.intermediate_dim = intermediate_dim
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, inputs_shape):
        self._check_hidden(inputs_shape, self.rank)
        shape = tuple(inputs_shape)
        self.intermediate = None
        if self.intermediate_dim:
            self.intermediate = _dense(
                self.intermediate_dim, "intermediate", self.dtype_policy,
                self.kernel_initializer, activation="tanh",
            )
            self.intermediate.build(shape)
            shape = shape[:-1] + (self.intermediate_dim,)
        self.output_dense = _dense(self.num_classes, "logits", self.dtype_policy, self.kernel_initializer)
        self.output_dense.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        _checks.check_rank("inputs", inputs, self.rank, self)
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        x = self.dropout_layer(inputs, training=training)
        if self.intermediate is not None:
            x = self.dropout_layer(self.intermediate(x), training=training)
        return self.output_dense(x)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "dropout": self.dropout,
                "intermediate_dim": self.intermediate_dim,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class ClassificationHead(_ClassifierHead):
    """Sequence classification logits from a pooled vector.

    Args:
        num_classes: int, number of labels.
        dropout: float, dropout before each projection.
        intermediate_dim: int or None, an extra `tanh` layer first (BART/RoBERTa).

    Call: `inputs` float `(b, d)` (pooled) -> logits `(b, num_classes)`.
    """


@keras.saving.register_keras_serializable(package="kzoo")
class TokenClassificationHead(_ClassifierHead):
    """Per-token logits for tagging (NER, POS). The input's Keras mask propagates.

    Args: as `ClassificationHead`.

    Call: `inputs` float `(b, s, d)` -> logits `(b, s, num_classes)`.
    """

    rank = 3

    def __init__(self, num_classes, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.supports_masking = True


@keras.saving.register_keras_serializable(package="kzoo")
class SpanHead(_Head):
    """Extractive QA head: start and end logits for every token (BERT on SQuAD).

    Positions where `padding_mask` is False get a very negative logit, so a softmax
    over the sequence never selects padding.

    Call: `inputs` float `(b, s, d)`, `padding_mask` `(b, s)` or None (defaults to
    the Keras mask of `inputs`) -> `(start_logits, end_logits)`, each float32
    `(b, s)` (float32 also under mixed precision, ready for the loss).
    """

    def build(self, inputs_shape, padding_mask_shape=None):
        self._check_hidden(inputs_shape, 3)
        self.dense = _dense(2, "span_logits", self.dtype_policy, self.kernel_initializer)
        self.dense.build(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, mask=None, inputs_mask=None):
        _checks.check_rank("inputs", inputs, 3, self)
        _checks.check_last_dim("inputs", inputs, self.hidden_dim, self)
        logits = self.dense(inputs)  # (b, s, 2)
        logits = ops.cast(logits, "float32")
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        padding_mask = next((m for m in (padding_mask, inputs_mask, mask) if m is not None), None)
        if padding_mask is not None:
            _checks.check_rank("padding_mask", padding_mask, 2, self)
            keep = ops.cast(padding_mask, "bool")
            start_logits = ops.where(keep, start_logits, MASKED_LOGIT)
            end_logits = ops.where(keep, end_logits, MASKED_LOGIT)
        return start_logits, end_logits

    def compute_mask(self, inputs, padding_mask=None, mask=None, inputs_mask=None):
        return None
