"""BERT encoder backbone: post-norm blocks, GELU, learned positions, segments, pooler.

The BERT-family variants are configurations of this one backbone: RoBERTa / XLM-RoBERTa
(`position_offset=2`, one segment), DistilBERT (`num_segments=0`, no pooler, 6 layers) and the
ELECTRA discriminator (no pooler; `embedding_dim` below `hidden_dim` adds `embeddings_projection`).
"""

import functools

import keras

from kzoo import layers
from kzoo.models.backbone import Backbone, weights_initializer
from kzoo.models.bert.config import BertConfig


@keras.saving.register_keras_serializable(package="kzoo")
class BertBackbone(Backbone):
    """The BERT encoder (Devlin et al. 2019).

    Inputs (dict): `token_ids` int `(b, s)`, `segment_ids` int `(b, s)` (0 for
    sentence A, 1 for B; accepted and ignored with `num_segments=0`), `padding_mask`
    int/bool `(b, s)` (1 for real tokens; sequences are right-padded).
    Outputs (dict): `sequence_output` `(b, s, hidden_dim)` and, unless built with
    `use_pooler=False`, `pooled_output` `(b, hidden_dim)` (tanh dense on the [CLS] position).

    Embeddings: `token + segment + position` (each `embedding_dim` wide), LayerNorm, dropout,
    then `embeddings_projection` (dense to `hidden_dim`) when `embedding_dim` differs from
    `hidden_dim`. Token `i` takes position row `position_offset + i`.

    Args: the fields of `BertConfig` (vocabulary_size, num_layers, num_heads,
        hidden_dim, intermediate_dim, max_sequence_length, num_segments, dropout,
        attention_dropout, activation, norm_epsilon, initializer_range, use_pooler,
        position_offset, embedding_dim), and `dtype`. Invalid sizes raise ValueError naming
        the field.

    Example:
        >>> backbone = kzoo.models.from_preset("bert_tiny")
        >>> outputs = backbone({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    """

    config_class = BertConfig

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length=512,
        num_segments=2,
        dropout=0.1,
        attention_dropout=0.1,
        activation="gelu",
        norm_epsilon=1e-12,
        initializer_range=0.02,
        use_pooler=True,
        position_offset=0,
        embedding_dim=None,
        dtype=None,
        **kwargs,
    ):
        config = self.config_class.from_arguments(locals())  # ValueError naming a bad size before anything is built
        width = config.embedding_width
        # === Layers ===
        # Each layer draws its own values (one shared instance would give every weight the same ones).
        independent = functools.partial(layers.independent_initializer, weights_initializer(initializer_range))
        self.token_embedding = layers.TokenEmbedding(
            vocabulary_size, width, embeddings_initializer=independent("token_embedding"), dtype=dtype,
            name="token_embedding",
        )
        self.segment_embedding = None  # DistilBERT has none: its `segment_ids` input is then ignored
        if num_segments:
            self.segment_embedding = layers.SegmentEmbedding(
                num_segments, width, embeddings_initializer=independent("segment_embedding"), dtype=dtype,
                name="segment_embedding",
            )
        self.position_embedding_layer = layers.PositionEmbedding(
            max_sequence_length, initializer=independent("position_embedding"), position_offset=position_offset,
            dtype=dtype, name="position_embedding",
        )
        self.embeddings_norm = layers.LayerNorm(norm_epsilon, dtype=dtype, name="embeddings_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.embeddings_projection = None
        if config.projects_embeddings:  # ELECTRA: embeddings narrower than the encoder
            self.embeddings_projection = keras.layers.Dense(
                hidden_dim, kernel_initializer=independent("embeddings_projection/kernel"), dtype=dtype,
                name="embeddings_projection",
            )
        self.encoder_blocks = [
            layers.EncoderBlock(
                num_heads,
                intermediate_dim,
                activation=activation,
                dropout=dropout,
                attention_dropout=attention_dropout,
                norm_epsilon=norm_epsilon,
                kernel_initializer=independent(f"encoder_block_{index}"),
                dtype=dtype,
                name=f"encoder_block_{index}",
            )
            for index in range(num_layers)
        ]
        self.pooler = None
        if use_pooler:
            self.pooler = layers.Pooler(kernel_initializer=independent("pooler"), dtype=dtype, name="pooler")

        # === Functional graph ===
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
        }
        outputs = self._forward(inputs)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.norm_epsilon = norm_epsilon
        self.initializer_range = initializer_range
        self.use_pooler = use_pooler
        self.position_offset = position_offset
        self.embedding_dim = embedding_dim

    @classmethod
    def projection_shape(cls, family, path):
        """As `Backbone.projection_shape`, plus ELECTRA's `embeddings_projection` `(embedding_dim, hidden_dim)`."""
        if path == "embeddings_projection":
            return (family.embedding_width, family.hidden_dim) if family.projects_embeddings else None
        return super().projection_shape(family, path)

    def _forward(self, inputs, return_attention_scores=False, training=None):
        tokens = self.token_embedding(inputs["token_ids"])
        if self.segment_embedding is None:
            x = tokens + self.position_embedding_layer(tokens)
        else:
            x = tokens + self.segment_embedding(inputs["segment_ids"]) + self.position_embedding_layer(tokens)
        x = self.embeddings_dropout(self.embeddings_norm(x), training=training)
        if self.embeddings_projection is not None:
            x = self.embeddings_projection(x)
        scores = []
        for block in self.encoder_blocks:
            # Scores only when asked: without them the attention may run a fused kernel.
            outputs = block(
                x, padding_mask=inputs["padding_mask"], return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                x, block_scores = outputs
                scores.append(block_scores)
            else:
                x = outputs
        outputs = {"sequence_output": x}
        if self.pooler is not None:
            outputs["pooled_output"] = self.pooler(x)
        if return_attention_scores:
            outputs["attention_scores"] = scores
        return outputs
