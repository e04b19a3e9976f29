import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kzoo import metrics


def test_perplexity_is_exp_of_nats():
    assert metrics.perplexity(0.0) == 1.0
    assert metrics.perplexity(math.log(50.0)) == pytest.approx(50.0, rel=1e-12)
    assert isinstance(metrics.perplexity(np.float32(1.0)), float)
    np.testing.assert_allclose(metrics.perplexity([0.0, 1.0, math.log(7)]), [1.0, math.e, 7.0], rtol=1e-12)


def test_perplexity_overflow_gives_inf_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.perplexity(1000.0) == math.inf
        assert metrics.perplexity(math.inf) == math.inf
        assert metrics.perplexity(709.0) < math.inf
        np.testing.assert_array_equal(metrics.perplexity([1e4, 0.0]), [math.inf, 1.0])


@pytest.mark.parametrize("value, message", [(-0.5, "must be >= 0"), (math.nan, "NaN")])
def test_perplexity_rejects_negative_and_nan(value, message):
    with pytest.raises(ValueError, match=message):
        metrics.perplexity(value)


def test_importing_metrics_loads_no_framework():
    code = "import sys, kzoo.metrics; print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
