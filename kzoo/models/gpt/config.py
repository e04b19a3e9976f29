"""GPT-2 style decoder sizes (Radford et al. 2019)."""

import dataclasses

from kzoo.models.config import ModelConfig


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
