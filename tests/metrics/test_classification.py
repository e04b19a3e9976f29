import numpy as np
import pytest

from kzoo import metrics

LABELS = [0, 0, 1, 1, 2]
PREDICTIONS = [0, 1, 1, 1, 0]
# per class: 0: tp 1 fp 1 fn 1 -> F1 1/2; 1: tp 2 fp 1 fn 0 -> 4/5; 2: tp 0 fn 1 -> 0


def test_hand_computed():
    assert metrics.accuracy(LABELS, PREDICTIONS) == pytest.approx(0.6)
    assert metrics.f1_score(LABELS, PREDICTIONS) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics.f1_score(LABELS, PREDICTIONS, average="micro") == pytest.approx(0.6)
    # a fourth class that never occurs counts as F1 0 once the classes are fixed
    assert metrics.f1_score(LABELS, PREDICTIONS, num_classes=4) == pytest.approx(1.3 / 4)


def test_logits_are_argmaxed():
    logits = np.eye(3)[PREDICTIONS] + 0.1
    assert metrics.accuracy(np.array(LABELS), logits) == pytest.approx(0.6)
    assert metrics.f1_score(LABELS, logits) == pytest.approx(1.3 / 3)


def test_perfect_and_zero_matches():
    assert metrics.accuracy([2, 1], [2, 1]) == 1.0 and metrics.f1_score([2, 1], [2, 1]) == 1.0
    assert metrics.accuracy([0, 0], [1, 1]) == 0.0
    assert metrics.f1_score([0, 0], [1, 1]) == 0.0 and metrics.f1_score([0, 0], [1, 1], average="micro") == 0.0


def test_empty_inputs_give_zero_not_nan():
    for value in (metrics.accuracy([], []), metrics.f1_score([], []), metrics.f1_score([], [], average="micro"),
                  metrics.f1_score([], [], num_classes=3)):
        assert value == 0.0


def test_errors():
    with pytest.raises(ValueError, match=r"labels and predictions must have the same length \(shape\), got \(3,\)"):
        metrics.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.accuracy([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="out of range for num_classes=2"):
        metrics.f1_score([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match="average must be 'macro' or 'micro'"):
        metrics.f1_score([0], [0], average="weighted")
    with pytest.raises(ValueError, match="negative class id"):
        metrics.accuracy([0, -1], [0, 1])
