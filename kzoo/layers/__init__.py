"""kzoo.layers: the Keras 3 building blocks of every kzoo model.

All layers use `keras.ops` only, so they run on the TensorFlow and JAX backends,
serialize with `get_config` (registered under the "kzoo" package, so `.keras` files
load in safe mode), and keep softmax and normalization statistics in float32 under
mixed precision.
"""

from kzoo.layers.attention import MultiHeadAttention, set_fused_attention
from kzoo.layers.blocks import DecoderBlock, EncoderBlock
from kzoo.layers.embeddings import (
    PositionEmbedding,
    RotaryEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEmbedding,
    TokenEmbedding,
)
from kzoo.layers.feed_forward import FeedForward
from kzoo.layers.heads import (
    ClassificationHead,
    MaskedLMHead,
    Pooler,
    SpanHead,
    TokenClassificationHead,
)
from kzoo.layers.initializers import independent_initializer
from kzoo.layers.masks import causal_mask, combine_masks
from kzoo.layers.normalization import LayerNorm, RMSNorm, get_normalization
from kzoo.layers.relative_position import RelativePositionBias

__all__ = [
    "ClassificationHead",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "LayerNorm",
    "MaskedLMHead",
    "MultiHeadAttention",
    "Pooler",
    "PositionEmbedding",
    "RMSNorm",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SegmentEmbedding",
    "SinusoidalPositionEmbedding",
    "SpanHead",
    "TokenClassificationHead",
    "TokenEmbedding",
    "causal_mask",
    "combine_masks",
    "get_normalization",
    "independent_initializer",
    "set_fused_attention",
]
