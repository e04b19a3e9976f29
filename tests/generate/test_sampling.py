"""Sampling: seeded reproducibility, degenerate settings equal greedy, and the sets
of tokens top-k and top-p draw from."""

import numpy as np
from keras import ops

from kzoo.generate import generate
from kzoo.generate.options import make_options
from kzoo.generate.sampling import TokenSelector, top_p_token
from tests.generate import helpers

FAST = dict(max_new_tokens=6, jit_compile=False)
DRAWS = 2000


def test_seeded_sampling_is_reproducible(gpt):
    options = dict(strategy="top_p", top_p=0.9, temperature=1.5, **FAST)
    first = generate(gpt, helpers.PROMPTS, seed=11, **options)
    np.testing.assert_array_equal(generate(gpt, helpers.PROMPTS, seed=11, **options), first)
    assert not np.array_equal(generate(gpt, helpers.PROMPTS, seed=12, **options), first)


def test_top_k_one_is_greedy(gpt):
    greedy = generate(gpt, helpers.PROMPTS, **FAST)
    np.testing.assert_array_equal(generate(gpt, helpers.PROMPTS, strategy="top_k", top_k=1, seed=3, **FAST), greedy)


def _draw(select, probabilities):
    """Draws `DRAWS` tokens from each row of `probabilities` (rows repeated, one seed)."""
    rows = np.repeat(np.asarray(probabilities, "float32"), DRAWS, axis=0)
    tokens = np.asarray(ops.convert_to_numpy(select(ops.convert_to_tensor(rows))))
    return [set(tokens[i * DRAWS : (i + 1) * DRAWS].tolist()) for i in range(len(probabilities))]


def test_top_p_keeps_the_minimal_nucleus():
    # Token 0 alone has 0.5 >= 0.45; tokens {0, 1} reach 0.8 >= 0.7; {0, 1, 2} reach 0.95 >= 0.85.
    probabilities = [[0.5, 0.3, 0.15, 0.05]]
    seed = ops.convert_to_tensor(np.array([5, 0], "uint32" if _jax() else "int32"))
    for top_p, nucleus in ((0.45, {0}), (0.7, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})):
        (drawn,) = _draw(lambda rows, p=top_p: top_p_token(rows, p, seed), probabilities)
        assert drawn == nucleus, top_p
    # With a top-k cut first, the nucleus is taken among the k likeliest.
    (drawn,) = _draw(lambda rows: top_p_token(rows, 1.0, seed, top_k=2), probabilities)
    assert drawn == {0, 1}


def test_top_k_draws_among_the_k_likeliest():
    selector = TokenSelector(make_options(4, strategy="top_k", top_k=2))
    probabilities = [[0.1, 0.4, 0.2, 0.3]]
    (drawn,) = _draw(lambda rows: selector(ops.log(rows), np.array([5, 0], "int32"), 0), probabilities)
    assert drawn == {1, 3}


def _jax():
    import keras

    return keras.backend.backend() == "jax"
