"""The smoke job: build a tiny decoder from kzoo.layers, train it briefly, save and reload.

It needs no data or weights from the network: the task is an arithmetic sequence
(`x[t+1] = x[t] + step mod vocabulary`, a random start and step per row) that a
causal model can only solve by reading the context, so a falling loss shows the
attention, masking, embeddings and training loop work together. Later issues replace
this job with the real training recipes.
"""

import os
import time

import keras
import numpy as np

from kzoo import layers, saving


def arithmetic_sequences(rng, batch_size, length, vocabulary_size, max_step=3):
    """Int32 `(batch_size, length + 1)` rows `start + step * t (mod vocabulary_size)`."""
    start = rng.integers(0, vocabulary_size, (batch_size, 1))
    step = rng.integers(1, max_step + 1, (batch_size, 1))
    return ((start + step * np.arange(length + 1)[None]) % vocabulary_size).astype("int32")


def build_tiny_decoder(vocabulary_size=32, hidden_dim=32, num_layers=2, num_heads=2, max_sequence_length=64):
    """A GPT-style causal LM: tied embeddings, learned positions, pre-norm blocks."""
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    embedding = layers.TokenEmbedding(vocabulary_size, hidden_dim, name="token_embedding")
    x = embedding(token_ids)
    x = x + layers.PositionEmbedding(max_sequence_length, name="position_embedding")(x)
    for index in range(num_layers):
        x = layers.DecoderBlock(
            num_heads, 4 * hidden_dim, norm_first=True, activation="gelu_tanh", name=f"block_{index}"
        )(x)
    logits = embedding(layers.LayerNorm(name="final_norm")(x), reverse=True)
    return keras.Model(token_ids, logits, name="tiny_decoder")


def run(steps=150, batch_size=32, sequence_length=16, output_dir="runs/smoke", seed=0, verbose=1):
    """Trains the tiny decoder and returns a dict of what happened."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_tiny_decoder()
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rows = arithmetic_sequences(rng, steps * batch_size, sequence_length, 32)
    held_out = arithmetic_sequences(rng, 256, sequence_length, 32)
    untrained_loss, _ = model.evaluate(held_out[:, :-1], held_out[:, 1:], verbose=0)
    started = time.perf_counter()
    history = model.fit(rows[:, :-1], rows[:, 1:], batch_size=batch_size, epochs=1, verbose=verbose)
    seconds = time.perf_counter() - started
    loss, accuracy = model.evaluate(held_out[:, :-1], held_out[:, 1:], verbose=0)

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "tiny_decoder.keras")
    model.save(path)
    restored = saving.load_model(path, compile=True)
    difference = float(np.max(np.abs(restored.predict(held_out[:8, :-1], verbose=0)
                                     - model.predict(held_out[:8, :-1], verbose=0))))
    return {
        "backend": keras.backend.backend(),
        "parameters": model.count_params(),
        "steps": steps,
        "train_seconds": seconds,
        "untrained_loss": float(untrained_loss),
        "final_train_loss": float(history.history["loss"][-1]),
        "held_out_loss": float(loss),
        "held_out_accuracy": float(accuracy),
        "saved_model": path,
        "reload_max_abs_difference": difference,
    }
