"""kzoo.metrics against the reference implementations on a few hundred random cases.

sacrebleu (BLEU), rouge-score (ROUGE), seqeval (entity F1) and scikit-learn (classification
F1) are test requirements, imported directly so that a broken install fails. SQuAD has no
pip-installable reference, so its official v1.1 evaluation functions are copied below.
"""

import collections
import re
import string
import warnings

import numpy as np
import pytest
import sacrebleu
import seqeval.metrics
import sklearn.metrics
from rouge_score import rouge_scorer

from kzoo import metrics

CASES = 300
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "2016", "x1"]


def _text(rng, low, high, words=WORDS):
    return " ".join(rng.choice(words, rng.integers(low, high)))


def _edited(rng, text, words):
    """`text` with some words replaced, dropped or doubled: a hypothesis with long matches."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < 0.1:
            continue
        out += [word, word] if roll < 0.15 else [str(rng.choice(words))] if roll < 0.3 else [word]
    return " ".join(out)


@pytest.mark.parametrize("smooth", ["none", "exp", "floor"])
def test_bleu_matches_sacrebleu(smooth):
    rng = np.random.default_rng(1)
    reference = sacrebleu.metrics.BLEU(tokenize="none", smooth_method=smooth)
    worst = 0.0
    for _ in range(CASES):
        segments, num_refs = rng.integers(1, 6), rng.integers(1, 4)
        words = WORDS[:rng.integers(3, len(WORDS) + 1)]  # small vocabularies make long matches likely
        streams = [[_text(rng, 1, 14, words) for _ in range(segments)] for _ in range(num_refs)]
        hypotheses = [_edited(rng, reference, words) if rng.random() < 0.7 else _text(rng, 0, 14, words)
                      for reference in streams[0]]
        expected = reference.corpus_score(hypotheses, streams)
        ours = metrics.corpus_bleu(hypotheses, [list(refs) for refs in zip(*streams, strict=True)], smooth=smooth)
        worst = max(worst, abs(ours["bleu"] * 100 - expected.score))
        assert ours["bleu"] * 100 == pytest.approx(expected.score, abs=1e-9)
        assert np.allclose(np.array(ours["precisions"]) * 100, expected.precisions, atol=1e-9)
        assert ours["brevity_penalty"] == pytest.approx(expected.bp, abs=1e-12)
        assert (ours["hypothesis_length"], ours["reference_length"]) == (expected.sys_len, expected.ref_len)
    print(f"BLEU smooth={smooth}: max |kzoo*100 - sacrebleu| = {worst:.3g}")


def test_rouge_matches_rouge_score():
    rng = np.random.default_rng(2)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    words = WORDS + ["The", "CAT", "Mat"]  # rouge_score lower-cases; so does kzoo by default
    predictions, references, expected = [], [], collections.defaultdict(list)
    worst = 0.0
    for case in range(CASES):
        prediction = _text(rng, 0, 25, words)
        refs = [_text(rng, 0 if case % 10 else 1, 25, words) for _ in range(rng.integers(1, 4))]
        scores = scorer.score_multi(refs, prediction) if len(refs) > 1 else scorer.score(refs[0], prediction)
        ours = metrics.rouge([prediction], [refs])
        for name in ("rouge1", "rouge2", "rougeL"):
            worst = max(worst, abs(ours[name] - scores[name].fmeasure))
            assert ours[name] == pytest.approx(scores[name].fmeasure, abs=1e-12)
            expected[name].append(scores[name].fmeasure)
        predictions.append(prediction)
        references.append(refs)
    corpus = metrics.rouge(predictions, references)
    for name, values in expected.items():
        assert corpus[name] == pytest.approx(np.mean(values), abs=1e-12)
    print(f"ROUGE: max |kzoo - rouge_score| per example = {worst:.3g}")


TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def test_entity_scores_match_seqeval():
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(CASES):
        lengths = rng.integers(0, 12, rng.integers(1, 6))
        true = [list(rng.choice(TAGS, n)) for n in lengths]
        predicted = [[tag if rng.random() < 0.7 else str(rng.choice(TAGS)) for tag in sentence] for sentence in true]
        ours = metrics.entity_scores(true, predicted)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # seqeval warns on zero division (and then reports 0, as kzoo does)
            expected = {
                "precision": seqeval.metrics.precision_score(true, predicted),
                "recall": seqeval.metrics.recall_score(true, predicted),
                "f1": seqeval.metrics.f1_score(true, predicted),
            }
            report = seqeval.metrics.classification_report(true, predicted, output_dict=True)
        for name, value in expected.items():
            worst = max(worst, abs(ours[name] - value))
            assert ours[name] == pytest.approx(value, abs=1e-12)
        per_type = {name: row for name, row in report.items() if not name.endswith(" avg")}
        assert sorted(per_type) == list(ours["per_type"])
        for name, row in per_type.items():
            mine = ours["per_type"][name]
            assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx(
                (row["precision"], row["recall"], row["f1-score"]), abs=1e-12)
            assert mine["num_true"] == row["support"]
    print(f"entity F1: max |kzoo - seqeval| = {worst:.3g}")


def test_classification_matches_sklearn():
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(150):  # scikit-learn's f1_score takes ~2 ms a call
        num_classes, size = rng.integers(1, 7), rng.integers(1, 40)
        labels, predictions = rng.integers(0, num_classes, size), rng.integers(0, num_classes, size)
        pairs = [
            (metrics.accuracy(labels, predictions), sklearn.metrics.accuracy_score(labels, predictions)),
            (metrics.f1_score(labels, predictions), sklearn.metrics.f1_score(labels, predictions, average="macro",
                                                                            zero_division=0)),
            (metrics.f1_score(labels, predictions, average="micro"),
             sklearn.metrics.f1_score(labels, predictions, average="micro", zero_division=0)),
            (metrics.f1_score(labels, predictions, num_classes=num_classes),
             sklearn.metrics.f1_score(labels, predictions, average="macro", labels=np.arange(num_classes),
                                      zero_division=0)),
        ]
        for ours, expected in pairs:
            worst = max(worst, abs(ours - expected))
            assert ours == pytest.approx(expected, abs=1e-12)
    print(f"classification: max |kzoo - sklearn| = {worst:.3g}")


# --- the official SQuAD v1.1 evaluation functions (evaluate-v1.1.py), unchanged ---
def _official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction, ground_truth):
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _official_exact_match_score(prediction, ground_truth):
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


def _official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)
# --- end of the official functions ---


def test_squad_matches_the_official_v1_1_script():
    rng = np.random.default_rng(5)
    pieces = ["The", "the", "a", "An", "Denver", "broncos", "Broncos,", "won", "(2016)", "theatre", "!", "'s", "  "]
    predictions, references = [], []
    for _ in range(CASES):
        predictions.append(" ".join(rng.choice(pieces, rng.integers(0, 6))))
        references.append([" ".join(rng.choice(pieces, rng.integers(0, 6))) for _ in range(rng.integers(1, 4))])
    pairs = list(zip(predictions, references, strict=True))
    em = [_official_metric_max_over_ground_truths(_official_exact_match_score, p, r) for p, r in pairs]
    f1 = [_official_metric_max_over_ground_truths(_official_f1_score, p, r) for p, r in pairs]
    for prediction, refs, expected_em, expected_f1 in zip(predictions, references, em, f1, strict=True):
        assert metrics.normalize_answer(prediction) == _official_normalize_answer(prediction)
        assert metrics.answer_exact_match(prediction, refs) == float(expected_em)
        assert metrics.answer_f1(prediction, refs) == pytest.approx(expected_f1, abs=1e-15)
    scores = metrics.squad_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(np.mean(em), abs=1e-12)
    assert scores["f1"] == pytest.approx(np.mean(f1), abs=1e-12)
    assert 0.05 < np.mean(em) < 0.95 and 0.05 < np.mean(f1) < 0.95  # the cases are not degenerate
