"""GPT-2 style decoder sizes (Radford et al. 2019)."""

import dataclasses

from kzoo.models.config import (
    ACTIVATIONS,
    ModelConfig,
    attention_parameters,
    embedding_parameters,
    feed_forward_parameters,
    norm_parameters,
)

POSITION_EMBEDDINGS = ("learned", "rotary")


@dataclasses.dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """Fields of `GPTBackbone`; defaults are GPT-2 small (124M).

    `position_embedding` is "learned" (GPT-2; longer inputs raise ValueError) or
    "rotary" (RoPE on queries and keys, GPT-NeoX style; no position table, so
    `max_sequence_length` is the trained context, not a hard limit).

    `pad_vocabulary_to_multiple_of` (training speed on GPUs): the token table gets
    rows up to the next multiple (64 turns 50257 into 50304, as nanoGPT does), so the
    output projection's matmul has a width GPU kernels tile evenly. Logits keep
    `vocabulary_size` columns; the padding rows are never used. 1: no padding (the
    published checkpoints' shapes).
    """

    vocabulary_size: int = 50257
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    intermediate_dim: int = 3072
    max_sequence_length: int = 1024
    position_embedding: str = "learned"
    rotary_max_wavelength: float = 10000.0
    rotary_dim: int | None = None
    dropout: float = 0.1
    activation: str = "gelu_tanh"
    norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    pad_vocabulary_to_multiple_of: int = 1

    def validate(self):
        self._positive_ints("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                            "max_sequence_length", "pad_vocabulary_to_multiple_of")
        self._heads_divide_width()
        self._choice("position_embedding", POSITION_EMBEDDINGS)
        self._optional_positive_int("rotary_dim")
        head_dim = self.hidden_dim // self.num_heads
        if self.rotary_dim is not None and (self.rotary_dim % 2 or self.rotary_dim > head_dim):
            self._fail(f"`rotary_dim`={self.rotary_dim} must be even and at most the head size "
                       f"hidden_dim / num_heads = {head_dim}.")
        self._positive_numbers("rotary_max_wavelength", "norm_epsilon", "initializer_range")
        self._rates("dropout")
        self._choice("activation", ACTIVATIONS)

    def parameter_count(self):
        d = self.hidden_dim
        tokens = embedding_parameters(self.vocabulary_size, d, self.pad_vocabulary_to_multiple_of)
        positions = self.max_sequence_length * d if self.position_embedding == "learned" else 0
        block = (norm_parameters(d) + attention_parameters(d, self.num_heads, d // self.num_heads)
                 + norm_parameters(d) + feed_forward_parameters(d, self.intermediate_dim))
        return tokens + positions + self.num_layers * block + norm_parameters(d)
