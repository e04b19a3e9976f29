"""Corpus BLEU and ROUGE-1/2/L for generated text, on whitespace tokens.

Both take detokenized or pre-tokenized strings and split them on whitespace only: run
them on the text you want scored (e.g. Moses-tokenized output for "tokenized BLEU").
Scores are fractions in [0, 1]; sacrebleu prints BLEU as 100 times `bleu`.
"""

import collections
import math

from kzoo.metrics._common import as_reference_list, check_same_length, divide, f_measure

_SMOOTHING = ("none", "exp", "floor")


def _ngrams(tokens, n):
    """Counter of the n-grams (tuples) of one order."""
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _ngram_counts(tokens, max_order):
    """Counter of all n-grams of orders 1..max_order."""
    counts = collections.Counter()
    for n in range(1, max_order + 1):
        counts.update(_ngrams(tokens, n))
    return counts


def _check_strings(values, name):
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{name}[{index}] must be a string (whitespace-separated tokens), got "
                             f"{type(value).__name__}.")


def corpus_bleu(hypotheses, references, *, max_order=4, smooth="none", smooth_value=0.1, lowercase=False):
    """Corpus-level BLEU (Papineni et al., 2002) over whitespace tokens.

    Clipped n-gram counts (an n-gram counts at most as often as in the reference that
    has it most) and lengths are summed over the corpus; BLEU is the brevity penalty
    times the geometric mean of the `max_order` precisions. The brevity penalty uses, per
    segment, the reference length closest to the hypothesis length (the shorter on a
    tie). Gives sacrebleu's `corpus_bleu(hypotheses, reference_streams,
    tokenize="none", smooth_method=smooth).score / 100` (sacrebleu takes references
    as streams, one list per reference set, and defaults to `smooth_method="exp"`).

    Args:
        hypotheses: system outputs, one string per segment.
        references: per segment, a reference string or a list of reference strings
            (any number per segment, at least one).
        max_order: the largest n-gram order (4 for BLEU-4).
        smooth: `"none"` (a zero precision makes BLEU 0), `"exp"` (the k-th order
            without a match gets precision `1 / (2**k * total)`, as in mteval-v13a) or
            `"floor"` (`smooth_value / total`). As in sacrebleu, smoothing never
            rescues a corpus with no matching unigram or with no n-grams of some order.
        smooth_value: the floor for `smooth="floor"`.
        lowercase: lower-case everything before splitting.

    Returns:
        dict: `bleu` in [0, 1], `precisions` (list of `max_order` floats, smoothed as
        used), `brevity_penalty`, `hypothesis_length` and `reference_length` (tokens).
        No segments, or only empty hypotheses, give `bleu` 0.0.

    Raises:
        ValueError: different numbers of hypotheses and references, a segment without
            a reference, a non-string input, or a bad `max_order`/`smooth`.
    """
    if smooth not in _SMOOTHING:
        raise ValueError(f"smooth must be one of {_SMOOTHING}, got {smooth!r}.")
    if int(max_order) < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}.")
    max_order = int(max_order)
    hypotheses, references = list(hypotheses), list(references)
    check_same_length(hypotheses, references, "hypotheses", "references")
    _check_strings(hypotheses, "hypotheses")
    correct, total = [0] * max_order, [0] * max_order
    hypothesis_length = reference_length = 0
    for index, (hypothesis, refs) in enumerate(zip(hypotheses, references, strict=True)):
        refs = as_reference_list(refs, f"references[{index}]")
        if lowercase:
            hypothesis, refs = hypothesis.lower(), [ref.lower() for ref in refs]
        tokens = hypothesis.split()
        clip, lengths = collections.Counter(), []
        for ref in refs:
            ref_tokens = ref.split()
            lengths.append(len(ref_tokens))
            for ngram, count in _ngram_counts(ref_tokens, max_order).items():
                clip[ngram] = max(clip[ngram], count)
        for ngram, count in _ngram_counts(tokens, max_order).items():
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, clip[ngram])
        hypothesis_length += len(tokens)
        reference_length += min(lengths, key=lambda length: (abs(length - len(tokens)), length))
    if hypothesis_length >= reference_length:
        brevity_penalty = 1.0
    else:
        brevity_penalty = math.exp(1 - reference_length / hypothesis_length) if hypothesis_length else 0.0
    precisions = [0.0] * max_order
    if any(correct):
        doubling = 1.0
        for n in range(max_order):
            if total[n] == 0:
                break
            if correct[n]:
                precisions[n] = correct[n] / total[n]
            elif smooth == "exp":
                doubling *= 2
                precisions[n] = 1.0 / (doubling * total[n])
            elif smooth == "floor":
                precisions[n] = smooth_value / total[n]
    if all(p > 0 for p in precisions):
        bleu = brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / max_order)
    else:
        bleu = 0.0
    return {"bleu": bleu, "precisions": precisions, "brevity_penalty": brevity_penalty,
            "hypothesis_length": hypothesis_length, "reference_length": reference_length}


def lcs_length(first, second):
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Hyyrö, 2004): one big-integer step per token of `second`.
    """
    if len(first) < len(second):
        first, second = second, first
    if not second:
        return 0
    positions = {}
    for i, token in enumerate(first):
        positions[token] = positions.get(token, 0) | (1 << i)
    full = (1 << len(first)) - 1
    row = full
    for token in second:
        matches = row & positions.get(token, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(first) - bin(row).count("1")


def _rouge_n(prediction, reference, n):
    predicted, target = _ngrams(prediction, n), _ngrams(reference, n)
    overlap = sum(min(count, predicted[ngram]) for ngram, count in target.items())
    precision = divide(overlap, sum(predicted.values()))
    recall = divide(overlap, sum(target.values()))
    return f_measure(precision, recall)


def _rouge_l(prediction, reference):
    if not prediction or not reference:
        return 0.0
    common = lcs_length(prediction, reference)
    return f_measure(common / len(prediction), common / len(reference))


def rouge(predictions, references, *, lowercase=True):
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures, averaged over examples.

    Per example: ROUGE-N is the F-measure of clipped n-gram overlap, ROUGE-L that of the
    longest common subsequence (sentence-level, not ROUGE-Lsum); with several
    references each type takes the best reference. Matches Google's `rouge_score`
    (`RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)`, `score` /
    `score_multi` F-measures) on lower-cased whitespace tokens. Unlike `rouge_score`,
    tokens are not stripped of non-alphanumeric characters (so non-Latin scripts
    count), and the corpus value is the plain mean, not a bootstrap estimate.

    Args:
        predictions: generated texts, one string per example.
        references: per example, a reference string or a list of them.
        lowercase: lower-case before splitting on whitespace (as `rouge_score` does).

    Returns:
        dict: `rouge1`, `rouge2`, `rougeL`, floats in [0, 1] (0.0 for no examples; an
        empty prediction or reference scores 0.0).

    Raises:
        ValueError: different lengths, an example without a reference, or a
            non-string input.
    """
    predictions, references = list(predictions), list(references)
    check_same_length(predictions, references, "predictions", "references")
    _check_strings(predictions, "predictions")
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for index, (prediction, refs) in enumerate(zip(predictions, references, strict=True)):
        refs = as_reference_list(refs, f"references[{index}]")
        if lowercase:
            prediction, refs = prediction.lower(), [ref.lower() for ref in refs]
        tokens, ref_tokens = prediction.split(), [ref.split() for ref in refs]
        sums["rouge1"] += max(_rouge_n(tokens, ref, 1) for ref in ref_tokens)
        sums["rouge2"] += max(_rouge_n(tokens, ref, 2) for ref in ref_tokens)
        sums["rougeL"] += max(_rouge_l(tokens, ref) for ref in ref_tokens)
    return {name: divide(value, len(predictions)) for name, value in sums.items()}
