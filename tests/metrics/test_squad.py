import itertools

import numpy as np
import pytest

from kzoo import metrics


def test_normalize_answer():
    assert metrics.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert metrics.normalize_answer("An apple, a day.") == "apple day"
    assert metrics.normalize_answer("Theatre anthem") == "theatre anthem"  # whole words only
    assert metrics.normalize_answer(" the ") == ""


def test_exact_match_and_f1_take_the_best_gold_answer():
    assert metrics.answer_exact_match("the Broncos", ["Denver Broncos", "broncos."]) == 1.0
    assert metrics.answer_exact_match("Broncos won", "Denver Broncos") == 0.0
    # pred {denver, broncos, won} vs gold {denver, broncos}: P 2/3, R 1 -> F1 0.8
    assert metrics.answer_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    assert metrics.answer_f1("Denver Broncos won", ["Carolina", "Denver Broncos won!"]) == 1.0
    # repeated tokens are clipped: "x x y" vs "x y" share x once and y once -> P 2/3, R 1
    assert metrics.answer_f1("x x y", "x y") == pytest.approx(0.8)


def test_empty_and_zero_match_give_zero():
    assert metrics.answer_f1("", "Denver") == 0.0 and metrics.answer_f1("Denver", "") == 0.0
    assert metrics.answer_f1("Carolina", "Denver") == 0.0
    # SQuAD v1.1 semantics: both empty after normalization -> EM 1 but F1 0
    assert metrics.answer_exact_match("", "the") == 1.0 and metrics.answer_f1("", "the") == 0.0
    assert metrics.squad_scores([], []) == {"exact_match": 0.0, "f1": 0.0}


def test_squad_scores_means():
    scores = metrics.squad_scores(["Denver Broncos", "Denver Broncos won", "Carolina"],
                                  [["denver broncos", "Broncos"], "the Denver Broncos", ["Denver"]])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)


def test_squad_errors():
    with pytest.raises(ValueError, match="predictions and references must have the same length, got 2 and 1"):
        metrics.squad_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"references\[0\] has no reference"):
        metrics.squad_scores(["a"], [[]])


START = [0.0, 1.0, 5.0, 2.0, 3.0]
END = [0.0, 0.0, 1.0, 9.0, 1.0]


def test_best_span_hand_computed():
    assert metrics.best_span(START, END, max_answer_length=5) == (2, 3, 14.0)
    assert metrics.best_span(START, END, max_answer_length=1) == (3, 3, 11.0)
    # without position 3, spans (2, 2) and (2, 4) both score 6: the earliest start, then the shortest wins
    valid = [True, True, True, False, True]
    assert metrics.best_span(START, END, max_answer_length=5, valid_mask=valid) == (2, 2, 6.0)
    assert metrics.best_span(START, END, 3, valid_mask=[False] * 5) == (0, 0, -np.inf)
    starts, ends, scores = metrics.best_span([START, START[::-1]], [END, END[::-1]], max_answer_length=5)
    np.testing.assert_array_equal(starts, [2, 0])  # reversed: start 3 + end 9 at (0, 1)
    np.testing.assert_array_equal(ends, [3, 1])
    np.testing.assert_array_equal(scores, [14.0, 12.0])


def test_best_span_matches_brute_force(rng):
    start, end = rng.normal(size=(300, 24)), rng.normal(size=(300, 24))
    valid = rng.random((300, 24)) < 0.8
    for max_length in (1, 4, 30):
        starts, ends, scores = metrics.best_span(start, end, max_length, valid)
        for row in range(len(start)):
            pairs = [(i, j) for i, j in itertools.product(range(24), repeat=2)
                     if i <= j < i + max_length and valid[row, i] and valid[row, j]]
            i, j = max(pairs, key=lambda pair: start[row, pair[0]] + end[row, pair[1]])
            assert (starts[row], ends[row]) == (i, j)
            assert scores[row] == start[row, i] + end[row, j]


def test_best_span_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.best_span(START, END[:4])
    with pytest.raises(ValueError, match="max_answer_length must be >= 1"):
        metrics.best_span(START, END, 0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.best_span([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="valid_mask must have the logits' shape"):
        metrics.best_span(START, END, valid_mask=[True])


@pytest.mark.backend("tensorflow", reason="NumPy post-processing of logits: no Keras backend op")
def test_squad_predictions_pick_the_best_window():
    context = "Denver Broncos won"
    none = [-1, -1]
    offsets = np.array([[none, none, [0, 6], [7, 14], none], [none, none, [7, 14], [15, 18], none]])
    features = {"offsets": offsets, "example_index": np.array([0, 0])}
    start = np.array([[9.0, 0, 3, 1, 9], [0, 0, 2, 0, 0]])  # [CLS] and [SEP] never win
    end = np.array([[9.0, 0, 0, 3, 9], [0, 0, 0, 2, 0]])
    assert metrics.squad_predictions(features, start, end, [context, "unused"]) == ["Denver Broncos", ""]
    # one token: "Broncos" scores 1 + 3 in the first window, more than "Denver" (3 + 0)
    assert metrics.squad_predictions(features, start, end, [context], max_answer_length=1) == ["Broncos"]
    with pytest.raises(ValueError, match="start_logits must be"):
        metrics.squad_predictions(features, start[:1], end, [context])


@pytest.mark.backend("tensorflow", reason="tf.data SQuAD features and NumPy post-processing: no Keras backend "
                                         "op")
def test_squad_predictions_recover_gold_answers_from_squad_features():
    from kzoo import data
    from tests.metrics.helpers import CharTokenizer

    context = "w1 w2 w3 The Denver Broncos won the Super Bowl in 2016, w4 w5 w6 w7"
    examples = [data.SquadExample("q1", "who?", context, "Denver Broncos", context.index("Denver")),
                data.SquadExample("q2", "when?", context, "2016", context.index("2016"))]
    features = data.squad_features(examples, CharTokenizer(), sequence_length=32, cls_id=1, sep_id=2, pad_id=0,
                                   doc_stride=8, max_query_length=5)
    assert len(features["example_index"]) > 4  # several windows per example
    rows = np.arange(len(features["example_index"]))
    start, end = np.zeros((2,) + features["token_ids"].shape)
    start[rows, features["start_positions"]] = 10.0  # windows without the answer point at [CLS] (not valid)
    end[rows, features["end_positions"]] = 10.0
    predictions = metrics.squad_predictions(features, start, end, examples)
    assert predictions == ["Denver Broncos", "2016,"]  # this tokenizer has no id_to_token: whole-word spans
    assert metrics.squad_scores(predictions, [e.answer_text for e in examples]) == {"exact_match": 1.0, "f1": 1.0}


def test_squad_prediction_spans_agree_with_squad_predictions():
    context = "Denver Broncos won"
    none = [-1, -1]
    offsets = np.array([[none, none, [0, 6], [7, 14], none], [none, none, [7, 14], [15, 18], none]])
    features = {"offsets": offsets, "example_index": np.array([0, 0])}
    start = np.array([[9.0, 0, 3, 1, 9], [0, 0, 2, 0, 0]])
    end = np.array([[9.0, 0, 0, 3, 9], [0, 0, 0, 2, 0]])
    spans = metrics.squad_prediction_spans(features, start, end, [context, "no window"])
    assert spans == [(0, 14), None]
    answers = metrics.squad_predictions(features, start, end, [context, "no window"])
    assert answers == [context[0:14], ""]
