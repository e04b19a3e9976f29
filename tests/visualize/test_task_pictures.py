"""Task pictures (`kzoo.visualize.tasks`); the metrics behind them are tested in tests/metrics/.

The markdown is checked as TensorBoard shows it: rendered by TensorBoard's own
`markdown_to_safe_html` (python-markdown with tables, then its HTML sanitizer), so a
cell that a `|` would split, a tag the sanitizer drops, or user text read as markup
fails here. The confusion matrix is checked on its matplotlib figure (tick labels and
cell texts) and as pixels. That a recipe's evaluation really logs these into
TensorBoard's event files is checked by `tests/recipes/test_bert_recipes.py`
(`test_classify_smoke_and_reload`).
"""

import re

import numpy as np
import pytest
from tensorboard.plugin_util import markdown_to_safe_html

from kzoo import metrics
from kzoo.recipes.evaluators import sample_generations
from kzoo.visualize import tasks

HOSTILE = "a|b *c* _d_ <script>x</script> [e](f) `g` \\ #h"


def html_of(markdown):
    return markdown_to_safe_html(markdown)


def cells(html):
    """The table's rows as lists of cell HTML (header row included)."""
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]


def visible(html):
    """The text a reader sees (tags removed, entities decoded)."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", html))


# --- markdown helpers ---------------------------------------------------------------------------


def test_user_text_is_shown_literally():
    html = html_of(tasks.escape_markdown(HOSTILE))
    assert visible(html).strip() == HOSTILE
    assert "<script>" not in html and "<em>" not in html and "<a " not in html


def test_line_starts_are_not_read_as_headings_lists_or_rules():
    text = "# not a heading\n- not a list\n1. not numbered\n2) nor this\n+ plain\n---\ntext\n==="
    html = html_of(tasks.escape_markdown(text))
    assert visible(html) == text and re.fullmatch(r"<p>[^<]*</p>", html, re.S)
    assert tasks.escape_markdown("a (b). c! 1.5") == "a (b). c! 1.5"  # nothing that cannot start markup


def test_table_cells_keep_pipes_and_newlines_inside_the_cell():
    table = tasks.side_by_side_table({"source": [HOSTILE, "two\nlines"], "output": ["x", "y\r\nz"]})
    rows = cells(html_of(table))
    assert rows[0] == ["#", "source", "output"]
    assert [len(row) for row in rows] == [3, 3, 3]
    assert visible(rows[1][1]) == HOSTILE
    assert rows[2][1] == "two<br>lines" and rows[2][2] == "y<br>z"
    with pytest.raises(ValueError, match="different lengths"):
        tasks.side_by_side_table({"source": ["a"], "output": []})
    with pytest.raises(ValueError, match="row 0 has 1 cells but the header has 2"):
        tasks.markdown_table(["a", "b"], [["x"]])


# --- classification ----------------------------------------------------------------------------


GOLD = [0, 0, 0, 1, 1, 2, 2, 2, 2]  # class 2 is "unseen": the model (2 outputs) never predicts it
PREDICTED = [0, 1, 0, 1, 1, 0, 1, 1, 1]
NAMES = ["negative", "positive", "neutral (unseen)"]


def test_per_class_table_rows_and_macro_average():
    table = tasks.per_class_table(NAMES, metrics.per_class_scores(GOLD, PREDICTED, num_classes=3))
    rows = cells(html_of(table))
    assert rows[0] == ["class", "precision", "recall", "F1", "support"]
    assert rows[1] == ["negative", "0.667", "0.667", "0.667", "3"]
    assert rows[2] == ["positive", "0.333", "1.000", "0.500", "2"]
    assert rows[3] == ["neutral (unseen)", "0.000", "0.000", "0.000", "4"]
    assert rows[4] == ["<strong>macro average</strong>", "0.333", "0.556", "0.389", "9"]
    assert f"{metrics.f1_score(GOLD, PREDICTED, num_classes=3):.3f}" == "0.389"


def test_confusion_matrix_figure_labels_and_counts():
    matrix = metrics.confusion_matrix(GOLD, PREDICTED, num_classes=3)
    figure = tasks.confusion_matrix_figure(matrix, NAMES, title="held-out, accuracy 0.44")
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == NAMES
    assert [label.get_text() for label in axes.get_yticklabels()] == NAMES
    assert axes.get_xlabel() == "predicted" and axes.get_ylabel() == "gold"
    assert axes.get_title() == "held-out, accuracy 0.44"
    texts = {(round(text.get_position()[1]), round(text.get_position()[0])): text for text in axes.texts}
    assert {key: int(text.get_text()) for key, text in texts.items()} == {
        (row, column): int(matrix[row, column]) for row in range(3) for column in range(3)}
    assert texts[(1, 1)].get_color() == "white" and texts[(0, 2)].get_color() == "black"  # readable on the colour
    assert len(figure.axes) == 2  # the colour bar

    pixels = tasks.confusion_matrix_image(matrix, NAMES)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # drawn, not blank


def test_confusion_matrix_figure_errors():
    with pytest.raises(ValueError, match="square"):
        tasks.confusion_matrix_figure(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="2 names for a 3 x 3 matrix"):
        tasks.confusion_matrix_figure(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="non-negative integer counts"):
        tasks.confusion_matrix_figure(np.array([[1, -1], [0, 0]]), ["a", "b"])


# --- NER ---------------------------------------------------------------------------------------


WORDS = ["Alice", "Smith", "joined", "A|B*", "in", "Rome", "."]
GOLD_TAGS = ["B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "O"]
PREDICTED_TAGS = ["B-PER", "O", "O", "B-ORG", "I-ORG", "B-LOC", "O"]


def test_marked_sentence_marks_entities_and_wrong_predictions():
    gold = html_of(tasks.marked_sentence(WORDS, GOLD_TAGS))
    assert gold == ("<p><strong>[Alice Smith]</strong><code>PER</code> joined <strong>[A|B*]</strong><code>ORG</code>"
                    " in <strong>[Rome]</strong><code>LOC</code> .</p>")
    predicted = visible(html_of(tasks.marked_sentence(WORDS, PREDICTED_TAGS, GOLD_TAGS)))
    assert predicted == "[Alice]PER ✗ Smith joined [A|B* in]ORG ✗ [Rome]LOC ."
    with pytest.raises(ValueError, match="7 words but 2 tags"):
        tasks.marked_sentence(WORDS, ["O", "O"])


def test_ner_examples_pick_sentences_with_entities():
    sentences = [["no", "names"], WORDS, ["Bob"], WORDS]
    gold = [["O", "O"], GOLD_TAGS, ["B-PER"], GOLD_TAGS]
    predicted = [["O", "O"], PREDICTED_TAGS, ["O"], GOLD_TAGS]
    text = visible(html_of(tasks.ner_examples(sentences, gold, predicted, count=2)))
    assert "no names" not in text  # no gold entity: not shown
    assert "1. gold: [Alice Smith]PER joined [A|B*]ORG in [Rome]LOC ." in text
    assert "predicted: [Alice]PER ✗ Smith" in text
    assert "2. gold: [Bob]PER" in text and "predicted: Bob" in text and "3." not in text
    with pytest.raises(ValueError, match="one of each per sentence"):
        tasks.ner_examples(sentences, gold, predicted[:1])


def test_entity_table_per_type_and_overall():
    scores = metrics.entity_scores([GOLD_TAGS], [PREDICTED_TAGS])
    rows = cells(html_of(tasks.entity_table(scores)))
    assert rows[0] == ["entity type", "precision", "recall", "F1", "support"]
    assert rows[1:] == [["LOC", "1.000", "1.000", "1.000", "1"], ["ORG", "0.000", "0.000", "0.000", "1"],
                        ["PER", "0.000", "0.000", "0.000", "1"], ["<strong>all (micro)</strong>", "0.333", "0.333",
                                                               "0.333", "3"]]


# --- QA ----------------------------------------------------------------------------------------


CONTEXT = "Ada Lovelace was born in London in 1815. She worked with *Babbage*."


def span(text, context=CONTEXT):
    start = context.index(text)
    return start, start + len(text)


def test_highlight_answers_overlapping_spans():
    html = html_of(tasks.highlight_answers(CONTEXT, span("London"), span("London in 1815")))
    assert ("born in ⟦<strong><em>London</em></strong> <em>in 1815</em>⟧. She worked with *Babbage*."
            in html)
    html = html_of(tasks.highlight_answers(CONTEXT, span("London"), span("London")))
    assert "⟦<strong><em>London</em></strong>⟧" in html
    html = html_of(tasks.highlight_answers(CONTEXT, span("1815"), None))  # no prediction
    assert "<strong>1815</strong>" in html and "⟦" not in html and "<em>" not in html
    assert visible(html) == CONTEXT


def test_highlight_answers_excerpts_long_contexts():
    context = "filler words here. " * 60 + "The answer is Paris. " + "more filler text. " * 60
    html = html_of(tasks.highlight_answers(context, span("Paris", context), span("answer", context), max_chars=200))
    text = visible(html)
    assert text.startswith("… ") and text.endswith(" …") and len(text) < 260
    assert "⟦<em>answer</em>⟧ is <strong>Paris</strong>" in html
    far = html_of(tasks.highlight_answers(context, span("Paris", context), (0, 6), max_chars=200))
    assert visible(far).count("…") == 2 and "⟦<em>filler</em>⟧" in far  # two excerpts, one cut between
    with pytest.raises(ValueError, match="not a \\(start, end\\) character span"):
        tasks.highlight_answers(CONTEXT, (5, 2), None)


def test_qa_examples_show_question_answers_and_scores():
    examples = [{"question": "Where was <she> born?", "context": CONTEXT, "gold_span": span("London"),
                 "predicted_span": span("London in 1815")},
                {"question": "When?", "context": CONTEXT, "gold_span": span("1815"), "predicted_span": None},
                {"question": "not shown", "context": CONTEXT, "gold_span": span("1815"), "predicted_span": None}]
    text = visible(html_of(tasks.qa_examples(examples, count=2)))
    assert "gold answer" in text and "predicted answer" in text  # the legend
    assert "1. Where was <she> born?" in text
    assert "gold: London · predicted: ⟦London in 1815⟧ (exact match 0, F1 0.50)" in text
    assert "gold: 1815 · predicted: ⟦(no answer)⟧ (exact match 0, F1 0.00)" in text
    assert "not shown" not in text


# --- generation --------------------------------------------------------------------------------


@pytest.mark.backend("tensorflow", reason="HTML from a dict of settings: no backend op, so once is enough")
def test_generation_settings_line():
    html = html_of(tasks.generation_settings({"strategy": "top_k", "max_new_tokens": 24, "top_k": 5}))
    assert visible(html) == "Decoding: strategy top_k · max_new_tokens 24 · top_k 5"
    assert "<code>top_k</code>" in html


class _RecordingModel:
    """Returns fixed continuations and records the options `generate` was called with."""

    def __init__(self):
        self.options = None

    def generate(self, prompts, **options):
        self.options = options
        return [f"<continued {prompt}>" for prompt in prompts]


def test_sample_generations_show_the_settings_they_used():
    model = _RecordingModel()
    evaluate = sample_generations(["A *b*", "c"], tokenizer="the tokenizer", max_new_tokens=7, strategy="top_p",
                                  top_p=0.8, seed=3)
    text = evaluate(model, {})["samples"]
    assert model.options == {"tokenizer": "the tokenizer", "strategy": "top_p", "max_new_tokens": 7, "top_p": 0.8,
                             "seed": 3}
    shown = visible(html_of(text))
    assert "A *b* <continued A *b*>" in shown
    assert "Decoding: strategy top_p · max_new_tokens 7 · top_p 0.8 · seed 3 · stop at end token" in shown
    sample_generations(["c"], tokenizer=None)(model, {})
    assert model.options["strategy"] == "greedy" and model.options["max_new_tokens"] == 24


# --- masked language modelling ------------------------------------------------------------------


def test_masked_predictions_table():
    example = {"tokens": ["[CLS]", "the", "[MASK]", "is", "a|b", "[SEP]"], "positions": [2, 4],
               "gold": ["cat", "a|b"], "predictions": [[("dog", 0.5), ("cat", 0.25)], [("a|b", 0.9), ("x", 0.05)]]}
    html = html_of(tasks.masked_predictions([example, example], count=1))
    assert visible(html).count("1.") == 1 and "2." not in visible(html)
    assert "the <strong>[MASK]</strong> is <strong>a|b</strong> [SEP]" in html
    rows = cells(html)
    assert rows[0] == ["position", "input", "gold", "top predictions"]
    assert rows[1] == ["2", "[MASK]", "cat", "dog (0.50), <strong>cat</strong> (0.25)"]
    assert rows[2] == ["4", "a|b", "a|b", "<strong>a|b</strong> (0.90), x (0.05)"]
    with pytest.raises(ValueError, match="2 positions, 1 gold tokens and 2 prediction lists"):
        tasks.masked_predictions([{**example, "gold": ["cat"]}])
    with pytest.raises(ValueError, match="outside its 6 tokens"):
        tasks.masked_predictions([{**example, "positions": [2, 6]}])
