import math

import pytest

from kzoo import metrics


def test_bleu_hand_computed():
    # precisions 4/5, 3/4, 2/3, 1/2 (geometric mean 0.2 ** 0.25); hypothesis 5 tokens vs reference 6
    result = metrics.corpus_bleu(["a b c d e"], ["a b c d f g"])
    assert result["precisions"] == pytest.approx([0.8, 0.75, 2 / 3, 0.5])
    assert result["brevity_penalty"] == pytest.approx(math.exp(1 - 6 / 5))
    assert result["bleu"] == pytest.approx(math.exp(-0.2) * 0.2**0.25)
    assert (result["hypothesis_length"], result["reference_length"]) == (5, 6)
    assert metrics.corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])["bleu"] == 1.0


def test_bleu_picks_the_closest_reference_length_shorter_on_ties():
    result = metrics.corpus_bleu(["a b c d e"], [["a b c d", "a b c d f g"]])
    assert result["reference_length"] == 4 and result["brevity_penalty"] == 1.0
    assert result["bleu"] == pytest.approx(0.2**0.25)


def test_bleu_clips_and_sums_over_the_corpus():
    result = metrics.corpus_bleu(["the the the the", "a b"], ["the cat", "a b"])
    assert result["precisions"][:2] == pytest.approx([3 / 6, 1 / 4])  # "the" clipped to 1; then "a", "b", "a b"
    assert result["bleu"] == 0.0  # no 4-gram at all


def test_bleu_smoothing():
    # precisions 3/4, 2/3, 1/2, 0/1
    assert metrics.corpus_bleu(["a b c x"], ["a b c d"])["bleu"] == 0.0
    assert metrics.corpus_bleu(["a b c x"], ["a b c d"], smooth="exp")["bleu"] == pytest.approx(0.125**0.25)
    assert metrics.corpus_bleu(["a b c x"], ["a b c d"], smooth="floor")["bleu"] == pytest.approx(0.025**0.25)
    assert metrics.corpus_bleu(["a b c x"], ["a b c d"], smooth="floor", smooth_value=0.5)["precisions"][3] == 0.5
    assert metrics.corpus_bleu(["A B"], ["a b"], max_order=2, lowercase=True)["bleu"] == 1.0


def test_bleu_empty_and_zero_matches_give_zero():
    for hypotheses, references in (([], []), ([""], ["a b c d"]), (["x y z w"], ["a b c d"]), ([""], [""])):
        result = metrics.corpus_bleu(hypotheses, references, smooth="exp")
        assert result["bleu"] == 0.0 and all(p == 0.0 for p in result["precisions"])


def test_bleu_errors():
    with pytest.raises(ValueError, match="hypotheses and references must have the same length, got 2 and 1"):
        metrics.corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"hypotheses\[0\] must be a string"):
        metrics.corpus_bleu([["a", "b"]], ["a b"])
    with pytest.raises(ValueError, match=r"references\[0\] has no reference"):
        metrics.corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="smooth must be one of"):
        metrics.corpus_bleu(["a"], ["a"], smooth="add-k")


def test_rouge_hand_computed():
    scores = metrics.rouge(["the cat sat on the mat"], ["the cat lay on the mat"])
    # unigrams 5 of 6 both ways; bigrams the-cat, on-the, the-mat of 5; LCS "the cat on the mat"
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    assert metrics.rouge(["The CAT"], ["the cat"]) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert metrics.rouge(["The CAT"], ["the cat"], lowercase=False)["rouge1"] == 0.0
    # ROUGE-L is order sensitive where ROUGE-1 is not: "b a" vs "a b" LCS 1
    assert metrics.rouge(["b a"], ["a b"]) == pytest.approx({"rouge1": 1.0, "rouge2": 0.0, "rougeL": 0.5})


def test_rouge_best_reference_and_mean():
    scores = metrics.rouge(["a b", "c d"], [["x y", "a b"], "x y"])
    assert scores == {"rouge1": 0.5, "rouge2": 0.5, "rougeL": 0.5}


def test_rouge_empty_and_zero_matches_give_zero():
    for predictions, references in (([], []), ([""], ["a b"]), (["a b"], [""]), (["a b"], ["c d"])):
        assert metrics.rouge(predictions, references) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_errors():
    with pytest.raises(ValueError, match="predictions and references must have the same length, got 1 and 2"):
        metrics.rouge(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"references\[0\] must be a string or a list of strings"):
        metrics.rouge(["a"], [[1]])


def _lcs_table(first, second):
    table = [[0] * (len(second) + 1) for _ in range(len(first) + 1)]
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            table[i + 1][j + 1] = table[i][j] + 1 if a == b else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_lcs_length_matches_dynamic_programming(rng):
    assert metrics.lcs_length([], ["a"]) == 0 and metrics.lcs_length(list("abcbdab"), list("bdcaba")) == 4
    for _ in range(300):
        first = list(rng.integers(0, 4, rng.integers(0, 90)))
        second = list(rng.integers(0, 4, rng.integers(0, 40)))
        assert metrics.lcs_length(first, second) == _lcs_table(first, second)
