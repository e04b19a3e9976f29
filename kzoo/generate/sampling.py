"""Choosing the next token from processed scores: greedy, sampling, top-k, top-p.

Full-distribution and top-k sampling use the keras-hub samplers'
`compute_probabilities` (softmax of `scores / temperature` in float32) and
`get_next_token`. Their randomness is made stateless and seeded per step: the
samplers draw from a `StepSeed` that returns `seed + [0, step]`, so a compiled loop
needs no random state and one `seed` reproduces the same tokens (on one backend;
TensorFlow and JAX use different generators).

Top-p is kzoo's own: keras-hub's `TopPSampler` keeps tokens while the cumulative
probability *before* them is `<= p`, which at a tie adds one token past the minimal
nucleus; here a token is kept only while the mass before it is `< p`, so the
nucleus is the smallest set of likeliest tokens whose probability reaches `p`
(as in `transformers`).

Shapes: B rows, V vocabulary; scores float32 `(B, V)`, tokens int32 `(B,)`.
"""

import keras
from keras import ops


class StepSeed(keras.random.SeedGenerator):
    """A stand-in `SeedGenerator` whose `next()` returns a given stateless seed tensor.

    keras-hub samplers call `keras.random.categorical(..., seed=self.seed_generator)`;
    with this object the seed is the `(2,)` tensor set by `set`, with no variable to
    update, so it works inside `tf.function`/XLA and `jax.jit` alike.
    """

    def __init__(self):  # no state variable on purpose (see the class docstring)
        self.name = "kzoo_step_seed"
        self._seed = None

    def set(self, seed):
        self._seed = seed

    def next(self, ordered=True):
        return self._seed


def step_seed(base_seed, step):
    """The stateless seed of one step: int32 `(2,)` base seed `[s, 0]` plus `[0, step]`,
    in the dtype the backend's stateless generators take (uint32 key under JAX)."""
    seed = ops.cast(base_seed, "int32") + ops.stack([ops.zeros((), "int32"), ops.cast(step, "int32")])
    return ops.cast(seed, "uint32") if keras.backend.backend() == "jax" else seed


def _categorical(log_probabilities, seed):
    generator = StepSeed()
    generator.set(seed)
    choice = keras.random.categorical(log_probabilities, 1, seed=generator, dtype="int32")
    return ops.squeeze(choice, axis=-1)


def make_sampler(options):
    """The keras-hub sampler for `options.strategy` ("sample", "top_k"), or None for
    "greedy" (an argmax of the raw scores, so ties break exactly as in `transformers`),
    "top_p" (kzoo's own) and "beam".

    keras-hub is imported here, not at the top: it imports TensorFlow (about 0.65 GB and seconds of start-up), which
    greedy, top-p and beam decoding under JAX never need."""
    temperature = options.temperature
    if options.strategy not in ("sample", "top_k"):
        return None
    import keras_hub

    if options.strategy == "sample":
        return keras_hub.samplers.RandomSampler(temperature=temperature, seed=0)
    return keras_hub.samplers.TopKSampler(k=options.top_k, temperature=temperature, seed=0)


def top_p_token(probabilities, top_p, seed, top_k=None):
    """Samples from the minimal nucleus of mass `top_p` (after an optional top-k cut).

    Args:
        probabilities: float32 `(B, V)`.
        top_p: float in (0, 1].
        seed: stateless seed from `step_seed`.
        top_k: int or None, consider only the `top_k` likeliest tokens.

    Returns:
        int32 `(B,)` token ids.
    """
    cutoff = top_k or ops.shape(probabilities)[-1]
    sorted_probabilities, sorted_ids = ops.top_k(probabilities, k=cutoff, sorted=True)
    mass_before = ops.cumsum(sorted_probabilities, axis=-1) - sorted_probabilities
    keep = ops.logical_or(mass_before < top_p, ops.arange(cutoff)[None, :] == 0)
    kept = ops.where(keep, sorted_probabilities, 0.0)
    choice = _categorical(ops.log(kept), seed)
    return ops.squeeze(ops.take_along_axis(sorted_ids, choice[:, None], axis=-1), axis=-1)


class TokenSelector:
    """Picks one token per row for a non-beam strategy.

    Args:
        options: `GenerationOptions` (strategy, temperature, top_k, top_p).
    """

    def __init__(self, options):
        self.options = options
        self.sampler = make_sampler(options)
        if self.sampler is not None and hasattr(self.sampler, "seed_generator"):
            self.seed = StepSeed()
            self.sampler.seed_generator = self.seed

    def __call__(self, scores, base_seed, step):
        """float32 `(B, V)` scores -> int32 `(B,)` tokens; `step` int32 scalar."""
        options = self.options
        if options.strategy == "greedy":
            return ops.cast(ops.argmax(scores, axis=-1), "int32")
        seed = step_seed(base_seed, step)
        if options.strategy == "top_p":
            probabilities = ops.softmax(ops.cast(scores, "float32") / options.temperature, axis=-1)
            return top_p_token(probabilities, options.top_p, seed, options.top_k)
        self.seed.set(seed)
        probabilities = self.sampler.compute_probabilities(scores)
        return ops.cast(self.sampler.get_next_token(probabilities), "int32")
