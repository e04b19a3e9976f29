"""BERT sizes (Devlin et al. 2019; the compact sizes of Turc et al. 2019)."""

import dataclasses

from kzoo.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class BertConfig(ModelConfig):
    """Fields of `BertBackbone`; defaults are BERT-base (uncased vocabulary)."""

    vocabulary_size: int = 30522
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    intermediate_dim: int = 3072
    max_sequence_length: int = 512
    num_segments: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    norm_epsilon: float = 1e-12
    initializer_range: float = 0.02
