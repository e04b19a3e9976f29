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
    if num_classes is not None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        largest = max(labels.max(initial=-1), predictions.max(initial=-1))
        if largest >= num_classes:
            raise ValueError(f"class id {largest} is out of range for num_classes={num_classes}.")
        classes = np.arange(int(num_classes))
    else:
        classes = np.union1d(labels, predictions)
    if not labels.size or not classes.size:
        return 0.0
    size = int(classes.max()) + 1
    true_positive = np.bincount(labels[labels == predictions], minlength=size)[classes].astype(np.float64)
    predicted = np.bincount(predictions, minlength=size)[classes]
    gold = np.bincount(labels, minlength=size)[classes]
    false_positive, false_negative = predicted - true_positive, gold - true_positive
    if average == "micro":
        return divide(2 * true_positive.sum(), 2 * true_positive.sum() + false_positive.sum() + false_negative.sum())
    denominator = 2 * true_positive + false_positive + false_negative
    per_class = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(per_class.mean())
