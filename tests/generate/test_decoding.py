"""Greedy and beam decoding: KV cache vs full recomputation vs the plain forward pass,
beam search on models whose scores are known, input forms and compile caching.

Models are built once per module and shared, so tests that use the same prompt shape
and options also share one compiled loop (as an application would). Under TensorFlow
the loops run as graphs without XLA (`jit_compile=False`, half the compile time on two
cores); `test_xla_loop_matches_graph_loop` covers XLA. JAX always compiles with jax.jit.
"""

import numpy as np
import pytest

from kzoo import models
from kzoo.generate import compile as compile_cache
from kzoo.generate import generate
from tests.generate import helpers
from tests.harness import to_numpy

NEW_TOKENS = 6
FAST = dict(jit_compile=False)


def test_gpt_cache_padding_and_beam_width_one(gpt):
    cached = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST)
    uncached = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, use_cache=False, **FAST)
    np.testing.assert_array_equal(cached, uncached)
    assert cached.shape == (3, NEW_TOKENS) and cached.dtype == np.int32
    assert len(set(cached.ravel().tolist())) > 2  # varied tokens, not one id repeated
    # The left-padded batch decodes like each row alone, and greedy is the step-wise argmax
    # of the ordinary forward pass (checked on prompt + output: one call, right-padded).
    np.testing.assert_array_equal(helpers.causal_argmax_continuations(gpt, helpers.PROMPTS, cached), cached)
    beam = generate(gpt, helpers.PROMPTS, strategy="beam", num_beams=1, max_new_tokens=NEW_TOKENS, **FAST)
    np.testing.assert_array_equal(beam, cached)


def test_rotary_gpt_with_left_padding_matches_the_forward_pass(rotary_gpt):
    # Rotary attention sees only position offsets, which left padding does not change.
    cached = generate(rotary_gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST)
    assert len(set(cached.ravel().tolist())) > 2
    np.testing.assert_array_equal(helpers.causal_argmax_continuations(rotary_gpt, helpers.PROMPTS, cached), cached)


@pytest.mark.parametrize(("design", "seed"), [("t5", 0), ("bart", 2)])
def test_seq2seq_cached_uncached_and_forward_pass_agree(design, seed):
    model = helpers.tiny_seq2seq(design, seed=seed)
    options = dict(max_new_tokens=NEW_TOKENS, decoder_start_id=0)
    cached = generate(model, helpers.PROMPTS, **options, **FAST)
    uncached = generate(model, helpers.PROMPTS, use_cache=False, **options, **FAST)
    np.testing.assert_array_equal(cached, uncached)
    assert len(set(cached.ravel().tolist())) > 2
    np.testing.assert_array_equal(helpers.seq2seq_argmax_continuations(model, helpers.PROMPTS, cached, 0), cached)


def test_stop_tokens_min_length_and_padding(gpt):
    free = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST)
    stop = int(free[0, 2])  # a token row 0 emits
    out = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, stop_token_ids=[stop], pad_id=60, **FAST)
    for row, reference in zip(out, free, strict=True):
        hits = np.flatnonzero(reference == stop)
        end = hits[0] + 1 if hits.size else NEW_TOKENS
        assert row[:end].tolist() == reference[:end].tolist()
        assert (row[end:] == 60).all()
    # min_length forbids the stop token for the first 3 new tokens.
    late = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, stop_token_ids=[stop], min_length=3, **FAST)
    assert stop not in late[:, :3]


def _markov_seq2seq(transition, width=16):
    """A seq2seq LM whose decoder ignores the source and predicts
    `log_softmax(logits) = log(transition[previous token])`: token embeddings are the
    first rows of the identity (one-hot vectors of `width`), every attention and
    feed-forward weight is zero (the residuals pass the embedding through), the final
    RMS norm is scaled back to the one-hot vector, and the untied LM head holds
    `log(transition)` in its first rows."""
    size = transition.shape[0]
    backbone = models.Seq2SeqBackbone(
        vocabulary_size=size, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, hidden_dim=width,
        intermediate_dim=24, position_embedding="relative", relative_buckets=8, relative_max_distance=16,
        norm_type="rms", norm_first=True, use_bias=False, attention_scale=1.0, scale_embeddings=False,
        tie_word_embeddings=False, dropout=0.0,
    )
    model = models.Seq2SeqLM(backbone)
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    backbone.token_embedding.embeddings.assign(np.eye(size, width, dtype="float32"))
    head = np.zeros((width, size), "float32")
    head[:size] = np.log(transition)
    backbone.token_embedding.reverse_embeddings.assign(head)
    epsilon = backbone.get_config()["norm_epsilon"]
    backbone.decoder_final_norm.scale.assign(np.full(width, np.sqrt(1.0 / width + epsilon), "float32"))
    return model


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
    # Tokens: 0 start/pad, 1-3 words, 4 end. From the start, 1 is likelier than 2 (greedy takes 1),
    # but 1 leads to a flat distribution while 2 is followed by the end token with probability 0.9.
    transition = np.array([
        [0.005, 0.500, 0.400, 0.080, 0.015],
        [0.010, 0.320, 0.280, 0.200, 0.190],
        [0.010, 0.030, 0.030, 0.030, 0.900],
        [0.010, 0.200, 0.200, 0.090, 0.500],
        [0.200, 0.200, 0.200, 0.200, 0.200],
    ])
    model = _markov_seq2seq(transition)
    options = dict(max_new_tokens=4, stop_token_ids=[4], decoder_start_id=0)
    greedy = [int(np.argmax(transition[0]))]
    for _ in range(3):
        greedy.append(int(np.argmax(transition[greedy[-1]])))
    assert greedy == [1, 1, 1, 1]  # 0.5 * 0.32^3, never ends
    # Scores (sum of log-probabilities / new tokens): [2, 4] -> log(0.4 * 0.9) / 2 = -0.51 beats the
    # best continuation of 1 that ends, [1, 2, 4] -> log(0.5 * 0.28 * 0.9) / 3 = -0.69.
    beam = generate(model, [[1, 2, 3]], strategy="beam", num_beams=2, early_stopping=True, **options, **FAST)
    assert beam.tolist() == [[2, 4]]


def test_exhaustive_beam_search_returns_the_argmax_sequence(rotary_gpt):
    """With as many beams as there are prefixes (V^(N-1)), beam search keeps every prefix,
    so it must return the sequence of highest total log-probability; all V^N sequences
    are enumerated to check."""
    # A prompt whose best sequence does not start with the greedy token, by a clear margin (0.22 in total
    # log-probability over the runner-up) for the fixture's random weights.
    vocabulary, steps, prompt = 61, 2, [1, 19]
    best = generate(rotary_gpt, [prompt], strategy="beam", num_beams=vocabulary ** (steps - 1), max_new_tokens=steps,
                    length_penalty=0.0, **FAST)
    grid = np.stack(np.meshgrid(*[np.arange(vocabulary)] * steps, indexing="ij"), -1).reshape(-1, steps)
    rows = np.concatenate([np.tile(prompt, (len(grid), 1)), grid], axis=1).astype("int32")
    logits = to_numpy(rotary_gpt({"token_ids": rows, "padding_mask": np.ones_like(rows)})).astype("float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    positions = len(prompt) - 1 + np.arange(steps)  # logits at position p predict token p + 1
    totals = log_probs[np.arange(len(grid))[:, None], positions[None, :], grid].sum(-1)
    assert best[0].tolist() == grid[np.argmax(totals)].tolist()
    first_greedy = int(np.argmax(log_probs[0, len(prompt) - 1]))
    assert best[0, 0] != first_greedy  # here the best sequence does not start with the greedy token


def test_input_forms_model_method_and_compile_cache(gpt):
    ragged = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST)
    traces = compile_cache.trace_count(gpt)
    assert traces >= 1
    width = max(map(len, helpers.PROMPTS))
    ids = np.zeros((3, width), "int32")
    mask = np.zeros((3, width), "int32")
    for index, prompt in enumerate(helpers.PROMPTS):  # right-padded, like kzoo.text's encode
        ids[index, : len(prompt)] = prompt
        mask[index, : len(prompt)] = 1
    dense = gpt.generate({"token_ids": ids, "padding_mask": mask}, max_new_tokens=NEW_TOKENS, **FAST)
    np.testing.assert_array_equal(dense, ragged)
    assert compile_cache.trace_count(gpt) == traces  # same batch, prompt length and options: no retrace
    single = generate(gpt, np.array(helpers.PROMPTS[1]), max_new_tokens=NEW_TOKENS, **FAST)
    assert single.ndim == 1 and single.tolist() == ragged[1].tolist()
    assert compile_cache.trace_count(gpt) == traces + 1  # a new shape compiles once more

    # The compiled loop reads the current weights (they are not baked in as constants).
    saved = gpt.get_weights()
    try:
        helpers.randomize(gpt, seed=5)
        changed = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST)
        assert compile_cache.trace_count(gpt) == traces + 1
        assert not np.array_equal(changed, ragged)
        np.testing.assert_array_equal(helpers.causal_argmax_continuations(gpt, helpers.PROMPTS, changed), changed)
    finally:
        gpt.set_weights(saved)


@pytest.mark.backend("tensorflow", reason="jit_compile is TensorFlow's switch; JAX always compiles with XLA")
def test_xla_loop_matches_graph_loop(gpt):
    graph = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, strategy="beam", num_beams=2, **FAST)
    xla = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, strategy="beam", num_beams=2, jit_compile=True)
    np.testing.assert_array_equal(xla, graph)
    greedy = generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, jit_compile=True)
    np.testing.assert_array_equal(greedy, generate(gpt, helpers.PROMPTS, max_new_tokens=NEW_TOKENS, **FAST))
