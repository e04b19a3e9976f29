"""Small shared checks for kzoo.metrics (pure Python, no TensorFlow)."""


def check_same_length(first, second, first_name, second_name):
    """Raises `ValueError` naming both arguments when `len(first) != len(second)`."""
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} must have the same length, got {len(first)} and {len(second)}."
        )


def divide(numerator, denominator):
    """`numerator / denominator`, or 0.0 when the denominator is 0 (never NaN)."""
    return numerator / denominator if denominator else 0.0


def f_measure(precision, recall):
    """Harmonic mean of precision and recall; 0.0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def as_reference_list(references, where):
    """One segment's references: a string becomes `[string]`; an empty list raises naming `where`."""
    if isinstance(references, str):
        return [references]
    references = list(references)
    if not references:
        raise ValueError(f"{where} has no reference; give at least one string.")
    for reference in references:
        if not isinstance(reference, str):
            raise ValueError(f"{where} must be a string or a list of strings, got an item of type "
                             f"{type(reference).__name__}.")
    return references
