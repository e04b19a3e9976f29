"""BERT sizes (Devlin et al. 2019; the compact sizes of Turc et al. 2019) and the BERT-family variants
RoBERTa / XLM-RoBERTa, DistilBERT and ELECTRA, which differ only in these fields."""

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

    The variants (defaults keep BERT exactly):
    `num_segments`: 0 builds no segment embedding (DistilBERT); the backbone still takes a
    `segment_ids` input, ignored, so every task, recipe and export feeds the same inputs.
    `position_offset`: rows of the position table in front of position 0 (RoBERTa and
    XLM-RoBERTa: 2, their padding id + 1, where their positions start); the table has
    `max_sequence_length + position_offset` rows and real tokens (right-padded) use rows
    `position_offset ..`, as Hugging Face numbers them.
    `embedding_dim`: width of the token/segment/position embeddings and their norm when it
    differs from `hidden_dim` (ELECTRA-small: 128 for a 256-wide encoder); a dense
    `embeddings_projection` then maps them to `hidden_dim`. None: `hidden_dim`, no projection.
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
    position_offset: int = 0
    embedding_dim: int | None = None

    def validate(self):
        self._positive_ints("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                            "max_sequence_length")
        for name, meaning in (("num_segments", "0: no segment embedding, as DistilBERT"),
                              ("position_offset", "RoBERTa: 2, BERT: 0")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self._fail(f"`{name}` must be a non-negative integer ({meaning}), got {value!r}.")
        self._optional_positive_int("embedding_dim")
        self._heads_divide_width()
        self._rates("dropout", "attention_dropout")
        self._choice("activation", ACTIVATIONS)
        self._positive_numbers("norm_epsilon", "initializer_range")
        self._bools("use_pooler")

    @property
    def embedding_width(self):
        """The width of the embeddings: `embedding_dim`, or `hidden_dim` when it is None."""
        return self.hidden_dim if self.embedding_dim is None else self.embedding_dim

    @property
    def projects_embeddings(self):
        """Whether the backbone has an `embeddings_projection` (embeddings narrower or wider than the encoder)."""
        return self.embedding_width != self.hidden_dim

    def parameter_count(self):
        d, e = self.hidden_dim, self.embedding_width
        embeddings = (embedding_parameters(self.vocabulary_size, e) + self.num_segments * e
                      + (self.max_sequence_length + self.position_offset) * e + norm_parameters(e))
        if self.projects_embeddings:
            embeddings += dense_parameters(e, d)
        block = (attention_parameters(d, self.num_heads, d // self.num_heads) + norm_parameters(d)
                 + feed_forward_parameters(d, self.intermediate_dim) + norm_parameters(d))
        pooler = dense_parameters(d, d) if self.use_pooler else 0
        return embeddings + self.num_layers * block + pooler
