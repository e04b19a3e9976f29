"""BERT sizes (Devlin et al. 2019; the compact sizes of Turc et al. 2019)."""

import dataclasses

from kzoo.models.config import (
    ACTIVATIONS,
    ModelConfig,
    attention_parameters,
    dense_parameters,
    embedding_parameters,
    feed_forward_parameters,
    norm_parameters,
)


@dataclasses.dataclass(frozen=True)
class BertConfig(ModelConfig):
    """Fields of `BertBackbone`; defaults are BERT-base (uncased vocabulary).

    `use_pooler`: build the tanh pooler over the [CLS] position (`pooled_output`). A
    checkpoint saved without one (e.g. Hugging Face `BertForMaskedLM`) imports with
    `use_pooler=False`; the backbone then has no `pooled_output`.
    """

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
    use_pooler: bool = True

    def validate(self):
        self._positive_ints("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                            "max_sequence_length", "num_segments")
        self._heads_divide_width()
        self._rates("dropout", "attention_dropout")
        self._choice("activation", ACTIVATIONS)
        self._positive_numbers("norm_epsilon", "initializer_range")
        self._bools("use_pooler")

    def parameter_count(self):
        d = self.hidden_dim
        embeddings = (embedding_parameters(self.vocabulary_size, d) + self.num_segments * d
                      + self.max_sequence_length * d + norm_parameters(d))
        block = (attention_parameters(d, self.num_heads, d // self.num_heads) + norm_parameters(d)
                 + feed_forward_parameters(d, self.intermediate_dim) + norm_parameters(d))
        pooler = dense_parameters(d, d) if self.use_pooler else 0
        return embeddings + self.num_layers * block + pooler
