"""GPT-2 style decoder sizes (Radford et al. 2019), and the Llama-style variants by configuration."""

import dataclasses

from kzoo.layers.embeddings import check_rotary_scaling, rotary_scaling_with_context
from kzoo.layers.normalization import NORM_TYPES
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

    Llama-style decoders (Llama, Mistral, Qwen2, SmolLM, TinyLlama) are this family with
    `position_embedding="rotary"`, `norm_type="rms"`, `gated_feed_forward=True`,
    `activation="silu"` (SwiGLU), no biases (`attention_bias`, `attention_output_bias`,
    `feed_forward_bias` False; Qwen2 keeps `attention_bias`), no dropout, and:
      * `num_key_value_heads`: grouped-query attention, key/value heads (dividing
        `num_heads`); None: `num_heads` (multi-head attention).
      * `tie_word_embeddings`: False gives the output projection its own `(d, V)` kernel.
      * `rotary_scaling`: Hugging Face's `rope_scaling` dict ("linear", "dynamic",
        "llama3", "yarn"); where it names no `original_max_position_embeddings`, the
        trained context is `max_sequence_length`.
      * `sliding_window`: each token attends to that many positions, itself included
        (Mistral).
    The defaults keep GPT-2 exactly as before these fields existed.
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
    num_key_value_heads: int | None = None
    norm_type: str = "layer"
    gated_feed_forward: bool = False
    attention_bias: bool = True
    attention_output_bias: bool = True
    feed_forward_bias: bool = True
    tie_word_embeddings: bool = True
    rotary_scaling: dict | None = None
    sliding_window: int | None = None

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
        self._choice("norm_type", NORM_TYPES)
        self._bools("gated_feed_forward", "attention_bias", "attention_output_bias", "feed_forward_bias",
                    "tie_word_embeddings")
        self._optional_positive_int("num_key_value_heads")
        if self.num_key_value_heads is not None and self.num_heads % self.num_key_value_heads:
            divisors = [n for n in range(1, self.num_heads + 1) if self.num_heads % n == 0]
            self._fail(f"`num_key_value_heads`={self.num_key_value_heads} must divide `num_heads`={self.num_heads}; "
                       f"choose among {divisors}.")
        self._optional_positive_int("sliding_window")
        if self.rotary_scaling is not None:
            if self.position_embedding != "rotary":
                self._fail("`rotary_scaling` scales rotary positions; set `position_embedding`='rotary' or "
                           "`rotary_scaling`=None.")
            check_rotary_scaling(rotary_scaling_with_context(self.rotary_scaling, self.max_sequence_length),
                                 f"{type(self).__name__}: `rotary_scaling`")

    def parameter_count(self):
        d, heads = self.hidden_dim, self.num_heads
        tokens = embedding_parameters(self.vocabulary_size, d, self.pad_vocabulary_to_multiple_of,
                                      tie_weights=self.tie_word_embeddings)
        positions = self.max_sequence_length * d if self.position_embedding == "learned" else 0
        attention = attention_parameters(d, heads, d // heads, self.attention_bias, self.num_key_value_heads,
                                         self.attention_output_bias)
        feed_forward = feed_forward_parameters(d, self.intermediate_dim, self.gated_feed_forward,
                                               self.feed_forward_bias)
        block = 2 * norm_parameters(d, self.norm_type) + attention + feed_forward
        return tokens + positions + self.num_layers * block + norm_parameters(d, self.norm_type)
