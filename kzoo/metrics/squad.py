"""SQuAD v1.1 exact match and token F1, and answer spans from start/end logits.

`normalize_answer`, `answer_exact_match` and `answer_f1` follow the official SQuAD v1.1
evaluation script (`evaluate-v1.1.py`): lower case, punctuation removed, the articles
a/an/the removed, whitespace collapsed; the best score over the gold answers counts.
Scores are fractions in [0, 1] (the official script prints 100 times these).
"""

import collections
import re
import string

import numpy as np

from kzoo.metrics._common import as_reference_list, check_same_length, divide

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    """Official SQuAD normalization: lower case, no punctuation, no a/an/the, single spaces.

    Args:
        text: an answer string.

    Returns:
        the normalized string (may be empty).
    """
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_exact_match(prediction, ground_truths):
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0.

    Args:
        prediction: the predicted answer string.
        ground_truths: one gold answer string or a non-empty list of them.

    Returns:
        float, 0.0 or 1.0.
    """
    ground_truths = as_reference_list(ground_truths, "ground_truths")
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(truth) for truth in ground_truths))


def _token_f1(prediction_tokens, truth_tokens):
    common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def answer_f1(prediction, ground_truths):
    """Bag-of-tokens F1 between the normalized prediction and the best gold answer.

    As in SQuAD v1.1, an empty (normalized) prediction or answer scores 0.0 (the v2.0
    script would give 1.0 when both are empty).

    Args:
        prediction: the predicted answer string.
        ground_truths: one gold answer string or a non-empty list of them.

    Returns:
        float in [0, 1].
    """
    ground_truths = as_reference_list(ground_truths, "ground_truths")
    predicted = normalize_answer(prediction).split()
    return max(_token_f1(predicted, normalize_answer(truth).split()) for truth in ground_truths)


def squad_scores(predictions, references):
    """Mean SQuAD v1.1 exact match and F1 over questions.

    Args:
        predictions: predicted answer strings, one per question.
        references: per question, a gold answer string or a list of them (SQuAD dev
            questions have several).

    Returns:
        dict: `exact_match` and `f1`, floats in [0, 1] (0.0 for no questions).

    Raises:
        ValueError: different lengths, or a question without gold answers.
    """
    predictions, references = list(predictions), list(references)
    check_same_length(predictions, references, "predictions", "references")
    exact, f1 = 0.0, 0.0
    for index, (prediction, truths) in enumerate(zip(predictions, references, strict=True)):
        truths = as_reference_list(truths, f"references[{index}]")
        exact += answer_exact_match(prediction, truths)
        f1 += answer_f1(prediction, truths)
    return {"exact_match": divide(exact, len(predictions)), "f1": divide(f1, len(predictions))}


def best_span(start_logits, end_logits, max_answer_length=30, valid_mask=None):
    """The span `start <= end < start + max_answer_length` maximizing `start_logit + end_logit`.

    This is BERT's SQuAD decoding rule (its `run_squad.py` searches the top-20 starts
    and ends; this searches every valid pair, so it always finds the maximum; BERT's
    extra "max context" filter needs a per-token flag that kzoo's features do not
    carry). Both ends must be valid positions: for `kzoo.data.squad_features` windows
    pass `valid_mask=features["offsets"][..., 0] >= 0` (context tokens only).

    Args:
        start_logits: `(sequence,)` or `(batch, sequence)` start scores.
        end_logits: end scores of the same shape.
        max_answer_length: the longest span in tokens (>= 1).
        valid_mask: optional boolean array of the same shape, True where a span may
            start or end; None allows every position.

    Returns:
        `(start, end, score)`: Python ints and a float for 1-D inputs, else int64 and
        float64 arrays of shape `(batch,)`. Ties go to the earliest start, then the
        shortest span. A row with no valid position gives `(0, 0, -inf)` (index 0 is
        [CLS], kzoo's "no answer" position).

    Raises:
        ValueError: mismatched shapes, a bad rank, NaN or +inf logits, or
            `max_answer_length < 1`.
    """
    start = np.asarray(start_logits, np.float64)
    end = np.asarray(end_logits, np.float64)
    if start.shape != end.shape:
        raise ValueError(f"start_logits and end_logits must have the same shape, got {start.shape} and {end.shape}.")
    if start.ndim not in (1, 2) or start.shape[-1] == 0:
        raise ValueError(f"logits must be (sequence,) or (batch, sequence) with sequence >= 1, got {start.shape}.")
    if int(max_answer_length) < 1:
        raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}.")
    if np.isnan(start).any() or np.isnan(end).any() or (start == np.inf).any() or (end == np.inf).any():
        raise ValueError("start_logits and end_logits must not contain NaN or +inf.")
    single = start.ndim == 1
    start, end = np.atleast_2d(start), np.atleast_2d(end)
    if valid_mask is not None:
        valid = np.asarray(valid_mask).astype(bool)
        if valid.shape != np.shape(start_logits):
            raise ValueError(f"valid_mask must have the logits' shape {np.shape(start_logits)}, got {valid.shape}.")
        valid = np.atleast_2d(valid)
        start, end = np.where(valid, start, -np.inf), np.where(valid, end, -np.inf)
    rows, length = start.shape
    width = min(int(max_answer_length), length)
    starts, ends = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    scores = np.full(rows, -np.inf)
    for first in range(0, rows, 256):  # bounds the (rows, sequence, width) candidate array
        block = slice(first, first + 256)
        padded = np.concatenate([end[block], np.full((end[block].shape[0], width - 1), -np.inf)], axis=1)
        # candidates[r, i, k] = start[r, i] + end[r, i + k]: the span (i, i + k).
        candidates = start[block, :, None] + np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)
        flat = candidates.reshape(candidates.shape[0], -1)
        best = flat.argmax(axis=1)
        scores[block] = flat[np.arange(flat.shape[0]), best]
        starts[block], offsets = np.divmod(best, width)
        ends[block] = starts[block] + offsets
    found = np.isfinite(scores)
    starts, ends = np.where(found, starts, 0), np.where(found, ends, 0)
    if single:
        return int(starts[0]), int(ends[0]), float(scores[0])
    return starts, ends, scores


def squad_predictions(features, start_logits, end_logits, contexts, max_answer_length=30):
    """Predicted answer text per example from the logits of its `squad_features` windows.

    Each window's best context span comes from `best_span`; an example's answer is its
    best-scoring window's span, cut from the context by `kzoo.data.squad.answer_text`
    (imported on first call, which loads TensorFlow; the rest of kzoo.metrics does not).

    Args:
        features: the dict from `kzoo.data.squad_features` (uses `offsets` and
            `example_index`), in the order the logits were computed (no shuffling).
        start_logits: `(num_windows, sequence_length)` start logits for those windows.
        end_logits: end logits of the same shape.
        contexts: per example (as indexed by `example_index`), its context string or its
            `SquadExample`.
        max_answer_length: the longest answer in sub-tokens.

    Returns:
        list of answer strings, one per entry of `contexts` ("" where an example has no
        window or no valid span). Score them with `squad_scores`.

    Raises:
        ValueError: logits whose shape differs from the windows', or an `example_index`
            beyond `contexts`.
    """
    contexts = [getattr(context, "context", context) for context in contexts]
    spans = squad_prediction_spans(features, start_logits, end_logits, contexts, max_answer_length)
    return [context[span[0]:span[1]] if span else "" for context, span in zip(contexts, spans, strict=True)]


def squad_prediction_spans(features, start_logits, end_logits, contexts, max_answer_length=30):
    """Where each example's predicted answer lies in its context, as a character span.

    The same decoding as `squad_predictions` (whose answers are `context[start:end]`
    of these spans), for showing the prediction in place, e.g. highlighted.

    Args:
        features, start_logits, end_logits, contexts, max_answer_length: as for
            `squad_predictions`.

    Returns:
        list with one entry per example: `(start, end)` character offsets (end
        exclusive) into its context, or None where it has no window, no valid span or
        an empty answer.

    Raises:
        ValueError: as `squad_predictions`.
    """
    from kzoo.data.squad import answer_text

    offsets = np.asarray(features["offsets"])
    example_index = np.asarray(features["example_index"])
    contexts = [getattr(context, "context", context) for context in contexts]
    for name, logits in (("start_logits", start_logits), ("end_logits", end_logits)):
        if np.shape(logits) != offsets.shape[:2]:
            raise ValueError(f"{name} must be (num_windows, sequence_length) = {offsets.shape[:2]}, "
                             f"got {np.shape(logits)}.")
    if example_index.size and example_index.max() >= len(contexts):
        raise ValueError(f"features refer to example {example_index.max()} but only {len(contexts)} contexts "
                         "were given.")
    if not example_index.size:
        return [None] * len(contexts)
    starts, ends, scores = best_span(start_logits, end_logits, max_answer_length, valid_mask=offsets[..., 0] >= 0)
    best = {}
    for window, example in enumerate(example_index.tolist()):
        if example not in best or scores[window] > scores[best[example]]:
            best[example] = window
    spans = []
    for example, context in enumerate(contexts):
        window = best.get(example)
        text = "" if window is None or not np.isfinite(scores[window]) else answer_text(
            context, offsets[window], starts[window], ends[window])
        first = int(offsets[window][starts[window]][0]) if text else 0
        spans.append((first, first + len(text)) if text else None)
    return spans
