"""Accuracy and macro/micro F1 for single-label classification from class ids."""

import numpy as np

from kzoo.metrics._common import divide


def _class_ids(labels, predictions):
    """Flat int64 arrays of gold and predicted ids; predictions with one more (class) axis are arg-maxed."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if predictions.ndim == labels.ndim + 1 and predictions.shape[:-1] == labels.shape and predictions.shape[-1]:
        predictions = predictions.argmax(axis=-1)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same length (shape), got {labels.shape} and {predictions.shape}."
        )
    ids = []
    for name, values in (("labels", labels), ("predictions", predictions)):
        values = values.reshape(-1)
        integral = np.issubdtype(values.dtype, np.integer) or values.dtype == bool or (
            np.issubdtype(values.dtype, np.floating) and np.array_equal(values, np.round(values)))
        if values.size and not integral:
            raise ValueError(f"{name} must hold integer class ids, got dtype {values.dtype}.")
        values = values.astype(np.int64)
        if values.size and values.min() < 0:
            raise ValueError(f"{name} holds a negative class id ({values.min()}).")
        ids.append(values)
    return ids


def _classes(labels, predictions, num_classes):
    """The class ids scored: `0 .. num_classes - 1` (checked against the ids), or those present when None."""
    if num_classes is None:
        return np.union1d(labels, predictions)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    largest = max(labels.max(initial=-1), predictions.max(initial=-1))
    if largest >= num_classes:
        raise ValueError(f"class id {largest} is out of range for num_classes={num_classes}.")
    return np.arange(int(num_classes))


def _counts(labels, predictions, classes):
    """float64 `(true positives, predicted, gold)` counts of each of `classes` (non-empty)."""
    size = int(classes.max()) + 1
    true_positive = np.bincount(labels[labels == predictions], minlength=size)[classes].astype(np.float64)
    predicted = np.bincount(predictions, minlength=size)[classes].astype(np.float64)
    gold = np.bincount(labels, minlength=size)[classes].astype(np.float64)
    return true_positive, predicted, gold


def accuracy(labels, predictions):
    """Fraction of examples whose predicted class id equals the gold one.

    Args:
        labels: gold class ids, any shape (e.g. `(n,)`), integer-valued.
        predictions: predicted class ids of the same shape, or scores/logits with one
            more trailing axis (`(n, num_classes)`), which are arg-maxed.

    Returns:
        float in [0, 1]; 0.0 for empty inputs.

    Raises:
        ValueError: shapes that differ, non-integer or negative ids.
    """
    labels, predictions = _class_ids(labels, predictions)
    return divide(float(np.sum(labels == predictions)), labels.size)


def f1_score(labels, predictions, average="macro", num_classes=None):
    """F1 of single-label classification, macro- or micro-averaged over classes.

    Per class c: `F1 = 2 tp / (2 tp + fp + fn)`, 0 when the class is neither gold nor
    predicted anywhere (scikit-learn's `f1_score` with `zero_division=0`).

    Args:
        labels: gold class ids (see `accuracy`).
        predictions: predicted class ids or logits (see `accuracy`).
        average: `"macro"` (unweighted mean of per-class F1) or `"micro"` (F1 of the
            pooled counts; equals accuracy for single-label data).
        num_classes: when given, the classes are `0 .. num_classes - 1` (a class never
            seen in either array counts as F1 0 in the macro mean, and ids
            `>= num_classes` raise); when None, the classes are those that appear in
            `labels` or `predictions` (scikit-learn's default).

    Returns:
        float in [0, 1]; 0.0 for empty inputs.

    Raises:
        ValueError: an unknown `average`, shapes that differ, bad ids.
    """
    if average not in ("macro", "micro"):
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}.")
    labels, predictions = _class_ids(labels, predictions)
    classes = _classes(labels, predictions, num_classes)
    if not labels.size or not classes.size:
        return 0.0
    true_positive, predicted, gold = _counts(labels, predictions, classes)
    false_positive, false_negative = predicted - true_positive, gold - true_positive
    if average == "micro":
        return divide(2 * true_positive.sum(), 2 * true_positive.sum() + false_positive.sum() + false_negative.sum())
    denominator = 2 * true_positive + false_positive + false_negative
    per_class = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(per_class.mean())


def per_class_scores(labels, predictions, num_classes=None):
    """Precision, recall, F1 and support of each class (scikit-learn's `classification_report` numbers).

    The F1 values are those whose unweighted mean is `f1_score(..., average="macro")`
    with the same `num_classes`; a ratio with a zero denominator is 0.0.

    Args:
        labels: gold class ids (see `accuracy`).
        predictions: predicted class ids or logits (see `accuracy`).
        num_classes: the classes are `0 .. num_classes - 1` when given, else those that
            appear in `labels` or `predictions` (see `f1_score`).

    Returns:
        dict of `(k,)` arrays over the k classes scored: `classes` (int64 ids),
        `precision`, `recall`, `f1` (float64 in [0, 1]) and `support` (int64, gold count).

    Raises:
        ValueError: shapes that differ, bad ids.

    Example:
        per_class_scores([0, 1, 1], [0, 1, 0])["recall"]  # array([1. , 0.5])
    """
    labels, predictions = _class_ids(labels, predictions)
    classes = _classes(labels, predictions, num_classes).astype(np.int64)
    if not classes.size:
        empty = np.zeros(0)
        return {"classes": classes, "precision": empty, "recall": empty, "f1": empty,
                "support": np.zeros(0, np.int64)}
    true_positive, predicted, gold = _counts(labels, predictions, classes)

    def ratio(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    return {"classes": classes, "precision": ratio(true_positive, predicted), "recall": ratio(true_positive, gold),
            "f1": ratio(2 * true_positive, predicted + gold), "support": gold.astype(np.int64)}


def confusion_matrix(labels, predictions, num_classes=None):
    """Counts of (gold class, predicted class) pairs.

    Args:
        labels: gold class ids (see `accuracy`).
        predictions: predicted class ids or logits (see `accuracy`).
        num_classes: the matrix is `(num_classes, num_classes)` when given (ids must be
            below it); when None, `max id + 1` square (0 x 0 for empty inputs).

    Returns:
        int64 array `(k, k)`: row = gold class id, column = predicted class id; the
        diagonal holds the correct predictions, row sums are the classes' supports.

    Raises:
        ValueError: shapes that differ, bad ids.

    Example:
        confusion_matrix([0, 1, 1], [0, 1, 0])  # [[1, 0], [1, 1]]
    """
    labels, predictions = _class_ids(labels, predictions)
    classes = _classes(labels, predictions, num_classes)
    size = int(num_classes) if num_classes is not None else (int(classes.max()) + 1 if classes.size else 0)
    return np.bincount(labels * size + predictions, minlength=size * size).reshape(size, size).astype(np.int64)
