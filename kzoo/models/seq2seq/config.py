"""Encoder-decoder sizes and design switches covering the original Transformer, T5, BART, mBART and Marian."""

import dataclasses

from kzoo.layers.embeddings import SINUSOIDAL_LAYOUTS
from kzoo.models.config import (
    ACTIVATIONS,
    NORM_TYPES,
    ModelConfig,
    attention_parameters,
    embedding_parameters,
    feed_forward_parameters,
    norm_parameters,
)

POSITION_EMBEDDINGS = ("sinusoidal", "learned", "relative")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    """Fields of `Seq2SeqBackbone`. Defaults are the original Transformer (base).

    Design switches, with the values of the published designs (mT5 and Flan-T5 are T5 v1.1):

    | field | Transformer | T5 v1.0 / v1.1 | BART | mBART | Marian (OPUS-MT) |
    |---|---|---|---|---|---|
    | position_embedding | "sinusoidal" | "relative" | "learned" (offset 2) | "learned" (offset 2) | "sinusoidal" |
    | sinusoidal_layout / store_position_table | interleaved / no | - | - | - | split / yes |
    | norm_type / norm_first | layer / post | rms / pre | layer / post | layer / pre | layer / post |
    | activation / gated_feed_forward | relu / no | relu / no, gelu_tanh / yes | gelu / no | gelu / no | silu / no |
    | use_bias | yes | no | yes | yes | yes |
    | attention_scale | 1/sqrt(k) | 1.0 | 1/sqrt(k) | 1/sqrt(k) | 1/sqrt(k) |
    | scale_embeddings (x sqrt(d)) | yes | no | no | yes | yes |
    | embedding_norm | no | no | yes | yes | no |
    | tie_word_embeddings | yes | yes (v1.0), no (v1.1) | yes | yes | yes |
    | scale_decoder_outputs (x d^-0.5 before the LM head) | no | yes (v1.0), no (v1.1) | no | no | no |

    Pre-norm stacks end with a final norm (T5, mBART); post-norm ones do not.

    Sinusoidal positions: `sinusoidal_layout` "interleaved" alternates sine and cosine
    features (the paper), "split" puts all sines first (Marian). `store_position_table`
    keeps the two `(max_sequence_length, hidden_dim)` tables as frozen weights instead of
    computing them on every call. transformers' `MarianMTModel` holds them as frozen
    `nn.Parameter`s and counts them in `num_parameters()` (2 x 512 x 512 = 524,288 of the
    74,410,496 of opus-mt-en-de), so a Marian config stores them: the kzoo model then holds,
    and `parameter_count` counts, exactly the values the reference counts, and the count
    stays equal to the weights a `.keras` file holds (which `kzoo.saving` checks). Marian's
    `final_logits_bias` is a buffer there, not counted; in kzoo it is the task's
    (`Seq2SeqLM(logits_bias=True)`), outside the backbone count.
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
    sinusoidal_layout: str = "interleaved"
    store_position_table: bool = False
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

    def validate(self):
        self._positive_ints("vocabulary_size", "num_encoder_layers", "num_decoder_layers", "num_heads", "hidden_dim",
                            "intermediate_dim", "max_sequence_length", "relative_buckets", "relative_max_distance")
        self._optional_positive_int("key_dim")
        self._heads_divide_width(self.key_dim)
        self._choice("position_embedding", POSITION_EMBEDDINGS)
        self._choice("sinusoidal_layout", SINUSOIDAL_LAYOUTS)
        self._bools("store_position_table")
        if self.store_position_table and self.position_embedding != "sinusoidal":
            self._fail(f"`store_position_table` applies to sinusoidal positions only; set it to False with "
                       f"position_embedding={self.position_embedding!r}.")
        offset = self.position_offset
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            self._fail(f"`position_offset` must be a non-negative integer, got {self.position_offset!r}.")
        if self.position_embedding == "relative" and self.relative_buckets < 4:
            self._fail(f"`relative_buckets` must be at least 4 (the encoder splits them by direction), got "
                       f"{self.relative_buckets}.")
        self._choice("norm_type", NORM_TYPES)
        self._choice("activation", ACTIVATIONS)
        self._positive_numbers("norm_epsilon", "initializer_range")
        if self.attention_scale is not None:
            self._positive_numbers("attention_scale")
        self._rates("dropout", "attention_dropout")
        self._bools("norm_first", "gated_feed_forward", "use_bias", "scale_embeddings", "embedding_norm",
                    "tie_word_embeddings", "scale_decoder_outputs")

    def parameter_count(self):
        d, heads, norm = self.hidden_dim, self.num_heads, self.norm_type
        head_dim = self.key_dim or d // heads
        tokens = embedding_parameters(self.vocabulary_size, d, tie_weights=self.tie_word_embeddings)
        positions = {
            "sinusoidal": 2 * self.max_sequence_length * d if self.store_position_table else 0,
            "learned": 2 * (self.max_sequence_length + self.position_offset) * d,
            "relative": 2 * self.relative_buckets * heads,
        }[self.position_embedding]
        embedding_norms = 2 * norm_parameters(d) if self.embedding_norm else 0  # always LayerNorm
        attention = attention_parameters(d, heads, head_dim, self.use_bias)
        feed_forward = feed_forward_parameters(d, self.intermediate_dim, self.gated_feed_forward, self.use_bias)
        encoder_block = attention + feed_forward + 2 * norm_parameters(d, norm)
        decoder_block = 2 * attention + feed_forward + 3 * norm_parameters(d, norm)
        final_norms = 2 * norm_parameters(d, norm) if self.norm_first else 0
        return (tokens + positions + embedding_norms + self.num_encoder_layers * encoder_block
                + self.num_decoder_layers * decoder_block + final_norms)
