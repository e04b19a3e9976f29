"""Encoder-decoder sizes and design switches covering the original Transformer, T5 and BART."""

import dataclasses

from kzoo.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    """Fields of `Seq2SeqBackbone`. Defaults are the original Transformer (base).

    Design switches, with the values of the three published designs:

    | field | Transformer | T5 v1.0 / v1.1 | BART |
    |---|---|---|---|
    | position_embedding | "sinusoidal" | "relative" | "learned" (position_offset=2) |
    | norm_type / norm_first | layer / post | rms / pre | layer / post |
    | activation / gated_feed_forward | relu / no | relu / no, gelu_tanh / yes | gelu / no |
    | use_bias | yes | no | yes |
    | attention_scale | 1/sqrt(k) | 1.0 | 1/sqrt(k) |
    | scale_embeddings (x sqrt(d)) | yes | no | no |
    | embedding_norm | no | no | yes |
    | tie_word_embeddings | yes | yes (v1.0), no (v1.1) | yes |
    | scale_decoder_outputs (x d^-0.5 before the LM head) | no | yes (v1.0), no (v1.1) | no |

    Pre-norm stacks end with a final norm (T5); post-norm ones do not.
    """

    vocabulary_size: int = 37000
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    hidden_dim: int = 512
    intermediate_dim: int = 2048
    key_dim: int | None = None
    max_sequence_length: int = 512
    position_embedding: str = "sinusoidal"
    position_offset: int = 0
    relative_buckets: int = 32
    relative_max_distance: int = 128
    norm_type: str = "layer"
    norm_first: bool = False
    norm_epsilon: float = 1e-6
    activation: str = "relu"
    gated_feed_forward: bool = False
    use_bias: bool = True
    attention_scale: float | None = None
    scale_embeddings: bool = True
    embedding_norm: bool = False
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
