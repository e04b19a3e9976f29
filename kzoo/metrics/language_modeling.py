"""Perplexity from a mean token cross-entropy."""

import numpy as np


def perplexity(mean_cross_entropy):
    """Perplexity `exp(mean_cross_entropy)` of a language model.

    Args:
        mean_cross_entropy: the mean per-token cross-entropy in nats (natural log, as
            Keras' `SparseCategoricalCrossentropy` reports it), averaged over the tokens
            that count (padding excluded). A Python/NumPy scalar, or an array of them.
            A loss in bits gives `2 ** bits` instead; pass `bits * ln 2`.

    Returns:
        A Python float for a scalar input, else a float64 array of the input's shape.
        A cross-entropy above ~709.78 (where float64 `exp` overflows) gives `inf`
        instead of raising `OverflowError` (`math.exp`) or warning (`np.exp`).

    Raises:
        ValueError: on a NaN or negative cross-entropy (a mean cross-entropy is >= 0;
            a negative value means the wrong quantity was passed).
    """
    values = np.asarray(mean_cross_entropy, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("mean_cross_entropy is NaN; the loss diverged or was averaged over zero tokens.")
    if (values < 0).any():
        raise ValueError(f"mean_cross_entropy must be >= 0 (a mean cross-entropy in nats), got {values.min()}.")
    with np.errstate(over="ignore"):
        result = np.exp(values)
    return float(result) if result.ndim == 0 else result
