"""One rule for handing an initializer on: every weight draws its own values.

A Keras 3 random initializer draws its seed once, when it is constructed (`seed=None` included), and returns the
same values on every call of the same shape; calls of other shapes share their leading values too (the stateless
random ops count from the same key). A model that handed one `TruncatedNormal` to every layer, and a layer that
handed its initializer to each projection, therefore started with identical query, key and value kernels in every
block and token, position and projection weights whose first values were equal. So every kzoo layer and model that
passes an initializer to a weight (`add_weight`), to a Keras sublayer (`Dense`, `EinsumDense`) or to a kzoo sublayer
passes `independent_initializer(its_initializer, name)` instead, and keeps the initializer it was given for its
`get_config` (so a `.keras` file stores what the user passed, as before).
"""

import zlib

import keras

# Derived seeds stay positive and below 2**31, so every backend's seed dtype (int32, uint32, int64) holds them.
_SEED_RANGE = 2**31 - 1


def independent_initializer(initializer, name):
    """An initializer for the one weight (or sublayer) `name` that shares no values with its siblings.

    - Unseeded random initializer (`seed=None`, e.g. "glorot_uniform" or a backbone's `TruncatedNormal`): a fresh
      copy, which draws its own seed from Python's `random` module; `keras.utils.set_random_seed(s)` seeds that
      module, so a model built twice after the same call gets the same weights.
    - Random initializer seeded with an int: a copy seeded with a seed derived from that int and `name` (a stable
      hash, the same in every process). Keras documents that a seeded initializer repeats its values on every
      call; handed to a whole layer, that would make its query, key and value kernels identical, which no one who
      seeds a layer wants. With the derived seeds, the layer's weights differ from one another and the layer still
      comes out the same every time it is built with that seed (two layers given the same seeded initializer are
      identical, as their seed says).
    - Random initializer seeded with a `keras.random.SeedGenerator`: returned as is; it already draws new values on
      every call.
    - Anything else (zeros, ones, constants, identity, a plain function): returned as is; it draws nothing.

    Args:
        initializer: what `keras.initializers.get` accepts (a name, a config dict, an `Initializer`, a callable).
        name: the receiving weight or sublayer's name, unique among its siblings ("query", "feed_forward",
            "embeddings"); it only matters for an int-seeded initializer. A weight and its sublayer's bias use
            distinct names ("query/kernel", "query/bias").

    Returns:
        An initializer (a callable `(shape, dtype) -> tensor`) for that one weight or sublayer.

    Example:
        >>> shared = keras.initializers.TruncatedNormal(stddev=0.02)
        >>> query = independent_initializer(shared, "query/kernel")((8, 2, 4))
        >>> key = independent_initializer(shared, "key/kernel")((8, 2, 4))  # values unlike `query`'s
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"independent_initializer: `name` must be the receiving weight's or sublayer's name (a "
                         f"non-empty string), got {name!r}.")
    initializer = keras.initializers.get(initializer)
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    config = initializer.get_config()
    if "seed" not in config:  # a deterministic initializer: nothing to draw
        return initializer
    seed = config["seed"]
    if seed is None:
        return type(initializer).from_config(config)  # a new instance draws a new seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        derived = zlib.crc32(f"{seed}/{name}".encode()) % _SEED_RANGE
        return type(initializer).from_config({**config, "seed": derived})
    return initializer  # a SeedGenerator: stateful, a fresh draw per call already
