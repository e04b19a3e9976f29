"""`independent_initializer`: each weight draws its own values, seeded or not; deterministic ones pass through."""

import keras
import numpy as np
import pytest

from kzoo.layers import FeedForward, MultiHeadAttention, independent_initializer
from tests.harness import to_numpy

pytestmark = pytest.mark.backend(
    "tensorflow", reason="which seed each weight gets is decided in Python before any backend op, so it is the same "
    "under JAX, where every layer test builds its weights through it"
)


def _values(initializer, name, shape=(4, 6)):
    return to_numpy(independent_initializer(initializer, name)(shape))


def test_unseeded_initializers_give_each_weight_its_own_values_reproducibly():
    shared = keras.initializers.TruncatedNormal(stddev=0.02)
    first, second = _values(shared, "query/kernel"), _values(shared, "query/kernel")
    assert not np.array_equal(first, second)  # unseeded: every copy draws afresh, whatever the name
    assert not np.array_equal(_values(shared, "table", (3, 4)).ravel(), first.ravel()[:12])  # no shared prefix
    keras.utils.set_random_seed(5)
    again = _values(shared, "query/kernel")
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(_values(shared, "query/kernel"), again)
    assert shared.get_config()["seed"] is None  # the caller's initializer is left as it was


def test_seeded_initializers_derive_one_seed_per_name():
    seeded = keras.initializers.GlorotUniform(seed=3)
    query, key = _values(seeded, "query/kernel"), _values(seeded, "key/kernel")
    assert not np.array_equal(query, key)
    np.testing.assert_array_equal(_values(seeded, "query/kernel"), query)  # the same name, the same values
    np.testing.assert_array_equal(_values(keras.initializers.GlorotUniform(seed=3), "query/kernel"), query)
    assert not np.array_equal(_values(keras.initializers.GlorotUniform(seed=4), "query/kernel"), query)


def test_deterministic_and_stateful_initializers_pass_through():
    for initializer in (keras.initializers.Zeros(), keras.initializers.Constant(0.5),
                        keras.initializers.TruncatedNormal(seed=keras.random.SeedGenerator(1))):
        assert independent_initializer(initializer, "kernel") is initializer
    function = lambda shape, dtype=None: keras.ops.ones(shape, dtype)  # noqa: E731
    assert independent_initializer(function, "kernel") is function
    assert isinstance(independent_initializer("ones", "kernel"), keras.initializers.Ones)
    with pytest.raises(ValueError, match="`name` must be"):
        independent_initializer("glorot_uniform", "")


def test_layers_given_one_seeded_initializer_build_distinct_reproducible_weights():
    """A seeded initializer handed to a layer: its projections differ, a rebuild repeats them, and `get_config`
    still stores the initializer the user passed (what a `.keras` file holds)."""

    def build():
        attention = MultiHeadAttention(num_heads=2, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
        attention.build((1, 3, 8))
        feed_forward = FeedForward(16, gated=True, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
        feed_forward.build((1, 3, 8))
        return attention, {w.path: to_numpy(w) for layer in (attention, feed_forward) for w in layer.weights}

    attention, first = build()
    kernels = [value for path, value in first.items() if path.endswith("kernel")]
    assert len(kernels) == 7
    assert all(not np.array_equal(a.ravel()[:64], b.ravel()[:64])  # 64: the smallest kernel's size
               for index, a in enumerate(kernels) for b in kernels[index + 1:])
    _, second = build()  # a second layer of each kind: Keras names it `..._1`, so compare in order
    for (path, value), other in zip(first.items(), second.values(), strict=True):
        np.testing.assert_array_equal(other, value, err_msg=path)
    assert attention.get_config()["kernel_initializer"]["config"]["seed"] == 3
