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


CM_GOLD = [0, 0, 0, 1, 1, 2, 2, 2, 2]  # class 2 is never predicted
CM_PREDICTED = [0, 1, 0, 1, 1, 0, 1, 1, 1]


def test_confusion_matrix_and_per_class_scores():
    matrix = metrics.confusion_matrix(CM_GOLD, CM_PREDICTED, num_classes=3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 2, 0], [1, 3, 0]])
    assert matrix.dtype == np.int64 and matrix.sum(axis=1).tolist() == [3, 2, 4]
    logits = np.eye(3)[CM_PREDICTED]  # scores are arg-maxed like everywhere in kzoo.metrics
    np.testing.assert_array_equal(metrics.confusion_matrix(CM_GOLD, logits, num_classes=3), matrix)
    assert metrics.confusion_matrix([0, 2], [0, 0]).shape == (3, 3)  # without num_classes: max id + 1

    scores = metrics.per_class_scores(CM_GOLD, CM_PREDICTED, num_classes=3)
    np.testing.assert_allclose(scores["precision"], [2 / 3, 2 / 6, 0.0], atol=1e-12)
    np.testing.assert_allclose(scores["recall"], [2 / 3, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(scores["f1"], [2 / 3, 0.5, 0.0], atol=1e-12)
    assert scores["support"].tolist() == [3, 2, 4] and scores["classes"].tolist() == [0, 1, 2]
    assert np.mean(scores["f1"]) == pytest.approx(metrics.f1_score(CM_GOLD, CM_PREDICTED, num_classes=3), abs=1e-12)
    with pytest.raises(ValueError, match="out of range for num_classes=2"):
        metrics.confusion_matrix(CM_GOLD, CM_PREDICTED, num_classes=2)


def test_per_class_scores_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 5, 200), rng.integers(0, 4, 200)
    ours = metrics.per_class_scores(gold, predicted, num_classes=5)
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        gold, predicted, labels=range(5), zero_division=0)
    for name, reference in (("precision", precision), ("recall", recall), ("f1", f1)):
        np.testing.assert_allclose(ours[name], reference, atol=1e-12, err_msg=name)
    assert ours["support"].tolist() == support.tolist()
    np.testing.assert_array_equal(metrics.confusion_matrix(gold, predicted, num_classes=5),
                                  sklearn_metrics.confusion_matrix(gold, predicted, labels=range(5)))
