"""Every layer in one small functional model: `.keras` round trip, mixed precision,
XLA / jit compilation and a training step, on the active Keras backend."""

import keras
import numpy as np
import pytest

from kzoo import layers as kl
from tests.harness import (
    assert_jit_matches_eager,
    assert_keras_file_round_trip,
    assert_mixed_precision_finite,
    fit_one_step,
    to_numpy,
)

VOCAB, WIDTH, HEADS, LENGTH, TARGET_LENGTH = 31, 16, 2, 8, 6


def build_stack():
    """An encoder-decoder touching every kzoo layer; returns a functional model."""
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = keras.Input((None,), dtype="int32", name="segment_ids")
    target_ids = keras.Input((None,), dtype="int32", name="target_ids")
    mask_positions = keras.Input((None,), dtype="int32", name="mask_positions")

    embedding = kl.TokenEmbedding(VOCAB, WIDTH, mask_zero=True, name="token_embedding")
    x = embedding(token_ids)
    x = x + kl.SegmentEmbedding(2, WIDTH)(segment_ids) + kl.PositionEmbedding(LENGTH)(x)
    x = kl.LayerNorm(epsilon=1e-12)(x)
    bias = kl.RelativePositionBias(HEADS, num_buckets=8, max_distance=16)(x)
    x = kl.EncoderBlock(HEADS, 32, dropout=0.1, attention_dropout=0.1)(x, attention_bias=bias)
    x = kl.EncoderBlock(HEADS, 32, norm_first=True, norm_type="rms", gated_feed_forward=True,
                        activation="silu", use_bias=False, rotary_max_wavelength=10000.0)(x)
    x = kl.RMSNorm()(x)

    y = embedding(target_ids)
    y = y + kl.SinusoidalPositionEmbedding(LENGTH)(y)
    decoder_bias = kl.RelativePositionBias(HEADS, num_buckets=8, max_distance=16, bidirectional=False)(y)
    y = kl.DecoderBlock(HEADS, 32, use_cross_attention=True, norm_first=True, activation="gelu_tanh")(
        y, encoder_outputs=x, self_attention_bias=decoder_bias
    )
    y = kl.MultiHeadAttention(HEADS)(y, key_value=x, use_causal_mask=False)
    y = kl.FeedForward(24, activation="relu")(y)

    pooled = kl.Pooler()(x)
    return keras.Model(
        {"token_ids": token_ids, "segment_ids": segment_ids, "target_ids": target_ids,
         "mask_positions": mask_positions},
        {
            "mlm": kl.MaskedLMHead(embedding, name="mlm_head")(x, mask_positions=mask_positions),
            "classes": kl.ClassificationHead(3)(pooled),
            "tags": kl.TokenClassificationHead(5)(x),
            "span": keras.ops.stack(kl.SpanHead()(x), axis=-1),
            "lm": embedding(kl.LayerNorm()(y), reverse=True),
        },
    )


def stack_inputs(batch=2):
    rng = np.random.default_rng(7)
    token_ids = rng.integers(1, VOCAB, (batch, LENGTH)).astype("int32")
    token_ids[1, -3:] = 0  # padding
    return {
        "token_ids": token_ids,
        "segment_ids": (np.arange(LENGTH)[None] >= LENGTH // 2).repeat(batch, 0).astype("int32"),
        "target_ids": rng.integers(1, VOCAB, (batch, TARGET_LENGTH)).astype("int32"),
        "mask_positions": rng.integers(0, LENGTH, (batch, 3)).astype("int32"),
    }


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = build_stack()
    restored = assert_keras_file_round_trip(model, stack_inputs(), tmp_path)
    assert len(restored.weights) == len(model.weights)
    restored_head = restored.get_layer("mlm_head")
    assert restored_head.token_embedding is restored.get_layer("token_embedding")


def test_outputs_finite_under_mixed_bfloat16():
    outputs = assert_mixed_precision_finite(build_stack, stack_inputs())
    assert outputs["lm"].dtype == "bfloat16"


def test_jit_compiled_prediction_matches_eager():
    assert_jit_matches_eager(build_stack(), stack_inputs())


# Keras' JAX backend runs an uncompiled train step op by op (slow, and not how anyone
# trains); TensorFlow's uncompiled step is a tf.function graph worth checking too.
JIT_MODES = [False, True] if keras.backend.backend() == "tensorflow" else [True]


# XLA compilation of the whole stack costs ~30 s under TensorFlow: that variant is in the slow tier there.
@pytest.mark.parametrize("jit_compile", [
    pytest.param(mode, id="jit" if mode else "graph",
                 marks=pytest.mark.slow if mode and keras.backend.backend() == "tensorflow" else ())
    for mode in JIT_MODES
])
def test_one_training_step(jit_compile):
    model = build_stack()
    inputs = stack_inputs(4)
    targets = {name: np.zeros(tuple(output.shape), "float32") for name, output in model(inputs).items()}
    before = {w.path: to_numpy(w).copy() for w in model.trainable_weights}
    fit_one_step(model, inputs, targets, jit_compile=jit_compile)
    unchanged = [w.path for w in model.trainable_weights if np.array_equal(before[w.path], to_numpy(w))]
    # A key bias shifts every logit of a softmax row equally, so its exact gradient is
    # zero (rounding noise may still move it): it is the one weight allowed to stay.
    assert [path for path in unchanged if not path.endswith("key/bias")] == []
