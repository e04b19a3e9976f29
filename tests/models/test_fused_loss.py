"""The chunked cross-entropy (`kzoo.models.losses`) and `GPTCausalLM(fused_loss=True)`.

The loss and its gradients are pinned to a NumPy formula; the fused model is pinned to
the same model trained on logits (fit steps, weights, metrics, evaluation), on both
backends, with a padded vocabulary, untied weights and a logits scale.
"""

import keras
import numpy as np
import pytest

from kzoo import models
from kzoo.models.losses import projected_cross_entropy
from tests import reference
from tests.harness import assert_keras_file_round_trip, dtype_policy, to_numpy

TOLERANCE = 1e-5  # fp32, chunked vs one matmul: different summation orders


def _reference_loss_and_gradients(hidden, kernel, targets, weights, vocabulary_size):
    """sum(w * CE) / sum(w), the hit share, and d loss / d hidden, d loss / d kernel in float64."""
    hidden, kernel = hidden.astype(np.float64), kernel.astype(np.float64)
    logits = hidden @ kernel[:, :vocabulary_size]  # (n, V)
    probabilities = reference.softmax(logits)
    rows = np.arange(len(targets))
    losses = -np.log(probabilities[rows, targets])
    total = weights.sum()
    loss = (weights * losses).sum() / total
    hits = (weights * (logits[rows, targets] >= logits.max(-1))).sum() / total
    logits_gradient = probabilities.copy()
    logits_gradient[rows, targets] -= 1
    logits_gradient *= weights[:, None] / total
    kernel_gradient = np.zeros_like(kernel)
    kernel_gradient[:, :vocabulary_size] = hidden.T @ logits_gradient
    return loss, hits, logits_gradient @ kernel[:, :vocabulary_size].T, kernel_gradient


def _value_and_gradients(function, hidden, kernel):
    """`function(hidden, kernel) -> (loss, ...)` and the gradients of the loss, on either backend."""
    if keras.backend.backend() == "jax":
        import jax

        (loss, aux), gradients = jax.value_and_grad(
            lambda h, k: (lambda out: (out[0], out[1:]))(function(h, k)), argnums=(0, 1), has_aux=True
        )(hidden, kernel)
        return (loss, *aux), gradients
    import tensorflow as tf

    hidden, kernel = tf.Variable(hidden), tf.Variable(kernel)
    with tf.GradientTape() as tape:
        outputs = function(hidden, kernel)
    return outputs, tape.gradient(outputs[0], [hidden, kernel])


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 100])  # one token, dividing, ragged, one chunk
def test_loss_accuracy_and_gradients_match_the_formula(chunk_size):
    rng = np.random.default_rng(0)
    vocabulary_size, rows = 37, 48  # 11 padding columns that must never be predicted
    hidden = rng.normal(size=(2, 10, 6)).astype("float32")
    kernel = rng.normal(size=(6, rows)).astype("float32")
    kernel[:, vocabulary_size:] = 50.0  # would dominate every softmax if they leaked in
    targets = rng.integers(0, vocabulary_size, (2, 10)).astype("int32")
    weights = (rng.random((2, 10)) > 0.3).astype("float32")
    (loss, accuracy, total), (hidden_gradient, kernel_gradient) = _value_and_gradients(
        lambda h, k: projected_cross_entropy(h, k, targets, weights, vocabulary_size, chunk_size=chunk_size),
        hidden, kernel)
    want = _reference_loss_and_gradients(hidden.reshape(-1, 6), kernel, targets.ravel(), weights.ravel(),
                                         vocabulary_size)
    np.testing.assert_allclose(float(loss), want[0], rtol=TOLERANCE)
    np.testing.assert_allclose(float(accuracy), want[1], rtol=TOLERANCE)
    assert float(total) == weights.sum()
    np.testing.assert_allclose(to_numpy(hidden_gradient).reshape(-1, 6), want[2], atol=TOLERANCE)
    np.testing.assert_allclose(to_numpy(kernel_gradient), want[3], atol=TOLERANCE)


def test_all_zero_weights_give_zero_loss_and_gradients():
    rng = np.random.default_rng(1)
    hidden, kernel = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4, 9)).astype("float32")
    (loss, accuracy, total), gradients = _value_and_gradients(
        lambda h, k: projected_cross_entropy(h, k, np.array([1, 2, 3]), np.zeros(3, "float32"), 9, chunk_size=2),
        hidden, kernel)
    assert float(loss) == 0.0 and float(accuracy) == 0.0 and float(total) == 0.0
    assert all(not np.any(to_numpy(gradient)) for gradient in gradients)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        projected_cross_entropy(np.zeros((2, 4), "float32"), np.zeros((4, 5), "float32"), np.zeros(2, "int32"),
                                None, 5, chunk_size=0)
    backbone = models.from_preset("gpt_test")
    with pytest.raises(ValueError, match="loss_chunk_size must be >= 1"):
        models.GPTCausalLM(backbone, fused_loss=True, loss_chunk_size=0)


# --- GPTCausalLM(fused_loss=True) against the same model trained on logits ----------------------------


def _gpt(fused, seed=3, **backbone_overrides):
    keras.utils.set_random_seed(seed)
    sizes = dict(vocabulary_size=97, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                 max_sequence_length=32, dropout=0.0)
    model = models.GPTCausalLM(models.GPTBackbone(**{**sizes, **backbone_overrides}), fused_loss=fused,
                               loss_chunk_size=7)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def _lm_batch(seed=0, batch=4, length=12, vocabulary_size=97):
    rng = np.random.default_rng(seed)
    padding = np.ones((batch, length), "int32")
    padding[1, -4:] = 0
    inputs = {"token_ids": rng.integers(0, vocabulary_size, (batch, length)).astype("int32") * padding,
              "padding_mask": padding}
    targets = rng.integers(0, vocabulary_size, (batch, length)).astype("int32")
    return inputs, targets, padding.astype("float32")


@pytest.mark.parametrize("overrides", [
    {}, pytest.param({"pad_vocabulary_to_multiple_of": 64}, marks=pytest.mark.slow)], ids=["plain", "padded"])
def test_fused_training_equals_training_on_logits(overrides):
    inputs, targets, weights = _lm_batch()
    histories, trained = {}, {}
    for fused in (False, True):
        model = _gpt(fused, **overrides)
        histories[fused] = model.fit(inputs, targets, sample_weight=weights, epochs=3, batch_size=4, verbose=0,
                                     shuffle=False).history
        trained[fused] = model
    np.testing.assert_allclose(histories[True]["loss"], histories[False]["loss"], rtol=TOLERANCE)
    np.testing.assert_allclose(histories[True]["accuracy"], histories[False]["accuracy"], atol=1e-6)
    for want, got in zip(trained[False].get_weights(), trained[True].get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE)
    evaluated = [trained[fused].evaluate(inputs, targets, sample_weight=weights, verbose=0, return_dict=True)
                 for fused in (False, True)]
    assert evaluated[1]["accuracy"] == pytest.approx(evaluated[0]["accuracy"], abs=1e-6)
    assert evaluated[1]["loss"] == pytest.approx(evaluated[0]["loss"], rel=TOLERANCE)


def test_fused_loss_applies_the_embedding_logits_scale():
    """A logits scale (T5 v1.0 ties with `hidden_dim ** -0.5`) goes into the fused loss as into the logits."""
    inputs, targets, weights = _lm_batch(seed=1)
    losses = {}
    for fused in (False, True):
        model = _gpt(fused)
        model.backbone.token_embedding.logits_scale = 0.25
        y_pred = model(inputs, training=True)
        assert y_pred.shape == ((4, 12, 16) if fused else (4, 12, 97))  # hidden states when fused
        losses[fused] = float(model.compute_loss(y=targets, y_pred=y_pred, sample_weight=weights))
    assert losses[True] == pytest.approx(losses[False], rel=TOLERANCE)


def test_fused_model_keeps_logits_for_inference_and_round_trips(tmp_path):
    model = _gpt(True)
    inputs, _, _ = _lm_batch()
    assert model(inputs).shape == (4, 12, 97)
    assert model.predict(inputs, verbose=0).shape == (4, 12, 97)
    restored = assert_keras_file_round_trip(model, inputs, tmp_path)
    assert restored.fused_loss and restored.loss_chunk_size == 7


def test_fused_loss_refuses_what_it_cannot_fuse():
    model = _gpt(True)
    with pytest.raises(ValueError, match="compile it with loss='auto'"):
        model.compile(loss="mse")
    backbone = models.GPTBackbone(vocabulary_size=16, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    with pytest.raises(ValueError, match="hidden_dim equals its vocabulary_size"):
        models.GPTCausalLM(backbone, fused_loss=True)


@pytest.mark.slow
def test_fused_loss_under_mixed_bfloat16_follows_the_logits_path():
    inputs, targets, weights = _lm_batch()
    losses = {}
    with dtype_policy("mixed_bfloat16"):
        for fused in (False, True):
            model = _gpt(fused)
            losses[fused] = model.fit(inputs, targets, sample_weight=weights, epochs=2, batch_size=4, verbose=0,
                                      shuffle=False).history["loss"]
            assert all(variable.dtype == "float32" for variable in model.trainable_variables)
    # bfloat16 logits on one side, bfloat16 chunk matmuls on the other: both keep the softmax in float32.
    np.testing.assert_allclose(losses[True], losses[False], rtol=2e-2)
    assert np.all(np.isfinite(losses[True]))


def test_fused_loss_reads_the_table_through_ops_only():
    """The fused path takes its kernel from the TokenEmbedding's variables: a changed table changes the loss."""
    model = _gpt(True)
    inputs, targets, weights = _lm_batch()
    hidden = model(inputs, training=True)
    before = float(model.compute_loss(y=targets, y_pred=hidden, sample_weight=weights))
    table = model.backbone.token_embedding.embeddings
    table.assign(np.zeros(table.shape, "float32"))
    after = float(model.compute_loss(y=targets, y_pred=hidden, sample_weight=weights))
    assert after == pytest.approx(np.log(97), rel=1e-6) and before != pytest.approx(after)
