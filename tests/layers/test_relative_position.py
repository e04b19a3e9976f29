import numpy as np
import pytest

from kzoo.layers import RelativePositionBias
from tests import reference
from tests.harness import assert_config_round_trip, to_numpy, weight


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
def test_buckets_match_t5_definition(bidirectional):
    layer = RelativePositionBias(num_heads=2, num_buckets=32, max_distance=128, bidirectional=bidirectional)
    offsets = np.arange(-300, 301, dtype="int32")
    got = to_numpy(layer.bucket(offsets))
    want = [reference.t5_bucket(int(o), bidirectional, 32, 128) for o in offsets]
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < 32


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("start_index, key_length", [(0, None), (4, 9)])
def test_bias_gathers_per_head_values(bidirectional, start_index, key_length):
    layer = RelativePositionBias(num_heads=3, num_buckets=8, max_distance=20, bidirectional=bidirectional)
    query = np.zeros((2, 5, 4), "float32")
    bias = to_numpy(layer(query, key_length=key_length, start_index=start_index))
    t = key_length or 5
    assert bias.shape == (1, 3, 5, t)
    table = weight(layer, "embeddings")
    for i in range(5):
        for j in range(t):
            bucket = reference.t5_bucket(j - (i + start_index), bidirectional, 8, 20)
            np.testing.assert_allclose(bias[0, :, i, j], table[bucket], atol=1e-6)
    assert_config_round_trip(layer)


def test_too_few_buckets_is_rejected():
    with pytest.raises(ValueError, match="`num_buckets` must be at least 4"):
        RelativePositionBias(num_heads=1, num_buckets=2)
