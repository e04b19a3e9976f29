"""GPT-style decoder-only backbone: pre-norm causal blocks, tied embeddings."""

import keras

from kzoo import layers
from kzoo.layers import _checks
from kzoo.models.backbone import Backbone

POSITION_EMBEDDINGS = ("learned", "rotary")


@keras.saving.register_keras_serializable(package="kzoo")
class GPTBackbone(Backbone):
    """The GPT-2 decoder stack (Radford et al. 2019), optionally with rotary positions.

    Inputs (dict): `token_ids` int `(b, s)`, `padding_mask` int/bool `(b, s)`.
    Output (dict): `sequence_output` `(b, s, hidden_dim)`, after the final LayerNorm.

    Args: the fields of `GPTConfig`, and `dtype`.
    """

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
        dtype=None,
        **kwargs,
    ):
        _checks.check_choice("position_embedding", position_embedding, POSITION_EMBEDDINGS, "GPTBackbone")
        rotary = position_embedding == "rotary"
        # === Layers ===
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.token_embedding = layers.TokenEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=initializer, dtype=dtype, name="token_embedding"
        )
        self.position_embedding = None
        if not rotary:
            self.position_embedding = layers.PositionEmbedding(
                max_sequence_length, initializer=initializer, dtype=dtype, name="position_embedding"
            )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.decoder_blocks = [
            layers.DecoderBlock(
                num_heads,
                intermediate_dim,
                activation=activation,
                dropout=dropout,
                attention_dropout=dropout,
                norm_first=True,
                norm_epsilon=norm_epsilon,
                rotary_max_wavelength=rotary_max_wavelength if rotary else None,
                rotary_dim=rotary_dim if rotary else None,
                kernel_initializer=initializer,
                dtype=dtype,
                name=f"decoder_block_{index}",
            )
            for index in range(num_layers)
        ]
        self.final_norm = layers.LayerNorm(norm_epsilon, dtype=dtype, name="final_norm")

        # === Functional graph ===
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
        }
        super().__init__(inputs=inputs, outputs=self._forward(inputs), dtype=dtype, **kwargs)

        # === Config ===
        self._store_config(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            max_sequence_length=max_sequence_length,
            position_embedding=position_embedding,
            rotary_max_wavelength=rotary_max_wavelength,
            rotary_dim=rotary_dim,
            dropout=dropout,
            activation=activation,
            norm_epsilon=norm_epsilon,
            initializer_range=initializer_range,
        )

    def _forward(self, inputs, return_attention_scores=False, training=None):
        x = self.token_embedding(inputs["token_ids"])
        if self.position_embedding is not None:  # rotary positions live in the attention
            x = x + self.position_embedding(x)
        x = self.embeddings_dropout(x, training=training)
        scores = []
        for block in self.decoder_blocks:
            x, block_scores = block(
                x, padding_mask=inputs["padding_mask"], return_attention_scores=True, training=training
            )
            scores.append(block_scores["self_attention"])
        outputs = {"sequence_output": self.final_norm(x)}
        if return_attention_scores:
            outputs["attention_scores"] = scores
        return outputs
