"""Task pictures for TensorBoard: what a model predicts, drawn or written so a person can read it.

Pure functions from plain data (label names, counts, tags, strings, character spans) to
a `(height, width, 3)` uint8 image (the confusion matrix) or a markdown string (the
rest). The recipes' evaluators call them and return the results; the Trainer logs a
uint8 array as an image and a string as text, which TensorBoard's text plugin renders
as markdown (tables included) and sanitizes to a few HTML tags (`strong`, `em`, `code`,
`br`, tables, lists; no colours, no `<mark>`), which is all the marking here uses.
Every piece of user text goes through `escape_markdown` (or `table_cell` inside a
table), so a `*`, `|`, `<` or newline in the data is shown as itself.

    classification  confusion_matrix_figure / confusion_matrix_image, per_class_table
    NER             entity_table, marked_sentence, ner_examples
    QA              highlight_answers, qa_examples
    generation      generation_settings, side_by_side_table
    masked LM       masked_predictions
"""

import html
import re

import numpy as np

from kzoo.metrics import answer_exact_match, answer_f1, bio_entities
from kzoo.visualize.figures import new_figure, to_pixels

_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]|])")  # markup anywhere in a line (`|`: a table cell's end)
_LINE_START_SPECIAL = re.compile(r"^([ \t]*)([#+\-]|\d+(?=[.)]))", re.M)  # heading, list item, rule


# --- markdown ----------------------------------------------------------------------------------


def escape_markdown(text):
    """`text` with what markdown or HTML would read as formatting escaped, so it is shown literally.

    `&`, `<`, `>` become HTML entities; a backslash, backtick, `*`, `_`, `[`, `]` or `|`
    gets a backslash anywhere, and so does a `#`, `+` or `-` (heading, list item, rule)
    or the `.`/`)` after a number (numbered list) that starts a line; a line-starting
    `=` becomes an entity (no underlined heading). Other characters (`.`, `(`, `!`, ...) cannot start markup here
    and stay as they are, so the raw text stays readable. Newlines are kept (a soft line
    break in a paragraph; see `table_cell` for tables).
    """
    text = _INLINE_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
    text = re.sub(r"^([ \t]*)=", r"\1&#61;", text, flags=re.M)
    return _LINE_START_SPECIAL.sub(lambda m: m.group(1) + (m.group(2) + "\\" if m.group(2)[0].isdigit()
                                                           else "\\" + m.group(2)), text)


def table_cell(text):
    """`text` escaped for one markdown table cell: `escape_markdown`, and line breaks as `<br>` (a newline
    would end the table row)."""
    return "<br>".join(escape_markdown(line) for line in re.split(r"\r\n|\r|\n", str(text)))


def markdown_table(header, rows):
    """A markdown table; cells are used as given (already markdown: escape text with `table_cell`).

    Args:
        header: the column titles (markdown).
        rows: sequences of cells, each as long as `header`.

    Raises:
        ValueError: a row whose length differs from the header's.
    """
    header = [str(cell) for cell in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for index, row in enumerate(rows):
        row = [str(cell) for cell in row]
        if len(row) != len(header):
            raise ValueError(f"row {index} has {len(row)} cells but the header has {len(header)}: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _score(value):
    return f"{float(value):.3f}"


# --- classification ----------------------------------------------------------------------------


def _short(name, limit=24):
    name = str(name)
    return name if len(name) <= limit else name[:limit - 1] + "…"


def confusion_matrix_figure(matrix, names, title="Confusion matrix"):
    """The confusion matrix as a matplotlib `Figure`: gold classes as rows, predicted classes as columns.

    Cells are coloured by the fraction of their gold row (recall-style, so rare classes
    stay visible next to frequent ones; the colour bar gives the scale) and show the
    count; dark cells get white text. Every class name is a tick label on both axes
    (names longer than 24 characters are shortened with "…"); counts are written in the
    cells up to 30 classes (beyond that they would not fit and only the colours show).

    Args:
        matrix: `(k, k)` non-negative integer counts, e.g. `kzoo.metrics.confusion_matrix`.
        names: k class names, in id order.
        title: the figure title (e.g. what was scored, and the accuracy).

    Returns:
        a `matplotlib.figure.Figure` on an Agg canvas (render with `to_png`/`to_pixels`).

    Raises:
        ValueError: a matrix that is not square, negative or non-integral counts, or a
            number of names that differs from its size.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square (k, k) array of counts, got shape {matrix.shape}.")
    if matrix.size and (np.any(matrix < 0) or not np.array_equal(matrix, np.round(matrix))):
        raise ValueError("matrix must hold non-negative integer counts.")
    names = [str(name) for name in names]
    size = matrix.shape[0]
    if len(names) != size:
        raise ValueError(f"{len(names)} names for a {size} x {size} matrix; give one name per class.")
    matrix = matrix.astype(np.int64)
    rows = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)

    label_room = 0.08 * max(len(_short(name)) for name in names)  # inches for the longest tick label
    side = min(max(3.0, 0.45 * size), 14.0)
    figure = new_figure(side + label_room + 1.6, side + label_room + 0.9)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the gold row")
    font = 9 if size <= 12 else 7
    axes.set_xticks(range(size), labels=[_short(name) for name in names], rotation=45, ha="right",
                    rotation_mode="anchor", fontsize=font)
    axes.set_yticks(range(size), labels=[_short(name) for name in names], fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title)
    if size <= 30:
        for row in range(size):
            for column in range(size):
                colour = "white" if fractions[row, column] > 0.5 else "black"
                axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour,
                          fontsize=font)
    figure.tight_layout()
    return figure


def confusion_matrix_image(matrix, names, title="Confusion matrix"):
    """`confusion_matrix_figure` rendered: a `(height, width, 3)` uint8 RGB array (a TensorBoard image)."""
    return to_pixels(confusion_matrix_figure(matrix, names, title))


def per_class_table(names, scores):
    """Per-class precision, recall, F1 and support as a markdown table, with a macro-average row.

    Args:
        names: the class names, in id order (`scores["classes"]` index them).
        scores: the dict of `kzoo.metrics.per_class_scores` (`classes`, `precision`,
            `recall`, `f1`, `support`).

    Returns:
        markdown: one row per class, then "macro average" (unweighted means: its F1 is
        `kzoo.metrics.f1_score(average="macro")` over the same classes) with the total
        support.
    """
    classes = [int(c) for c in scores["classes"]]
    rows = [[table_cell(names[c]), _score(p), _score(r), _score(f), str(int(s))] for c, p, r, f, s in zip(
        classes, scores["precision"], scores["recall"], scores["f1"], scores["support"], strict=True)]
    if classes:
        rows.append(["**macro average**", _score(np.mean(scores["precision"])), _score(np.mean(scores["recall"])),
                     _score(np.mean(scores["f1"])), str(int(np.sum(scores["support"])))])
    return markdown_table(["class", "precision", "recall", "F1", "support"], rows)


# --- NER ---------------------------------------------------------------------------------------


def entity_table(scores):
    """Entity-level precision, recall, F1 and support per entity type as a markdown table.

    Args:
        scores: the dict of `kzoo.metrics.entity_scores` (overall counts and `per_type`).

    Returns:
        markdown: one row per type (support = gold entities of that type), then the
        overall micro-averaged row ("all", the recipe's entity_precision/recall/f1).
    """
    rows = [[table_cell(kind), _score(s["precision"]), _score(s["recall"]), _score(s["f1"]), str(s["num_true"])]
            for kind, s in scores["per_type"].items()]
    rows.append(["**all (micro)**", _score(scores["precision"]), _score(scores["recall"]), _score(scores["f1"]),
                 str(scores["num_true"])])
    return markdown_table(["entity type", "precision", "recall", "F1", "support"], rows)


def _entity(words, kind, mark=""):
    return f"<strong>[{escape_markdown(' '.join(words))}]</strong><code>{escape_markdown(kind)}</code>{mark}"


def marked_sentence(words, tags, reference_tags=None):
    """One sentence as markdown with its entities marked: `[Alice Smith]` in bold followed by the type in code.

    Args:
        words: the sentence's words (strings).
        tags: their BIO tags (`kzoo.metrics.bio_entities` reads them).
        reference_tags: optional gold tags of the same words; an entity that is not
            exactly (type, start, end) among the gold ones is followed by " ✗".

    Returns:
        markdown text (one line).

    Raises:
        ValueError: tag lists whose length differs from the words', or a non-BIO tag.
    """
    words = [str(word) for word in words]
    for name, values in (("tags", tags), ("reference_tags", reference_tags)):
        if values is not None and len(values) != len(words):
            raise ValueError(f"{len(words)} words but {len(values)} {name}; give one tag per word.")
    gold = set(bio_entities(reference_tags)) if reference_tags is not None else None
    starts = {start: (kind, end) for kind, start, end in bio_entities(tags)}
    pieces, position = [], 0
    while position < len(words):
        if position in starts:
            kind, end = starts[position]
            wrong = gold is not None and (kind, position, end) not in gold
            pieces.append(_entity(words[position:end + 1], kind, " ✗" if wrong else ""))
            position = end + 1
        else:
            pieces.append(escape_markdown(words[position]))
            position += 1
    return " ".join(pieces)


def ner_examples(sentences, gold_tags, predicted_tags, count=3):
    """A few sentences with their gold and predicted entities marked, as markdown.

    Args:
        sentences: lists of words.
        gold_tags: their gold BIO tags (one list per sentence).
        predicted_tags: the predicted tags (as `kzoo.metrics.word_level_tags` gives).
        count: how many sentences: the first `count` with at least one gold entity (the
            same ones at every evaluation, so they can be compared over steps).

    Returns:
        markdown: a legend line, then per sentence a "gold:" and a "predicted:" line
        (a predicted entity not in the gold ones is followed by ✗).

    Raises:
        ValueError: lists of different lengths, or tags that do not match the words.
    """
    if not len(sentences) == len(gold_tags) == len(predicted_tags):
        raise ValueError(f"{len(sentences)} sentences, {len(gold_tags)} gold and {len(predicted_tags)} predicted "
                         "tag lists; give one of each per sentence.")
    chosen = [index for index, tags in enumerate(gold_tags) if bio_entities(tags)][:count]
    blocks = ["Entities: <strong>[words]</strong><code>TYPE</code>; ✗ marks a predicted entity that is not "
              "exactly a gold one (type and extent)."]
    for number, index in enumerate(chosen, start=1):
        words = sentences[index]
        blocks.append(f"**{number}.** gold: {marked_sentence(words, gold_tags[index])}<br>\n"
                      f"predicted: {marked_sentence(words, predicted_tags[index], gold_tags[index])}")
    return "\n\n".join(blocks)


# --- QA ----------------------------------------------------------------------------------------


def _check_span(span, length, name):
    if span is None:
        return None
    start, end = (int(value) for value in span)
    if not 0 <= start <= end <= length:
        raise ValueError(f"{name} {span} is not a (start, end) character span within the context "
                         f"(length {length}).")
    return (start, end) if start < end else None  # an empty answer marks nothing


def _marked_text(context, first, last, gold, predicted):
    """`context[first:last]` as markdown, the parts inside `gold` bold, inside `predicted` italic in ⟦ ⟧."""
    spans = [span for span in (gold, predicted) if span is not None]
    cuts = sorted({first, last, *(p for span in spans for p in span if first <= p <= last)})
    pieces = []
    for begin, end in zip(cuts[:-1], cuts[1:], strict=True):
        if predicted is not None and begin == predicted[0]:
            pieces.append("⟦")
        text = context[begin:end]
        in_gold = gold is not None and gold[0] <= begin and end <= gold[1]
        in_predicted = predicted is not None and predicted[0] <= begin and end <= predicted[1]
        stripped = text.strip()
        if stripped and (in_gold or in_predicted):  # tags hug the text; the spaces around stay outside
            marked = escape_markdown(stripped)
            marked = f"<em>{marked}</em>" if in_predicted else marked
            marked = f"<strong>{marked}</strong>" if in_gold else marked
            lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            pieces.append(escape_markdown(lead) + marked + escape_markdown(trail))
        else:
            pieces.append(escape_markdown(text))
        if predicted is not None and end == predicted[1]:
            pieces.append("⟧")
    return "".join(pieces)


def highlight_answers(context, gold_span, predicted_span, max_chars=600):
    """The context as markdown with the gold answer in bold and the predicted one in ⟦italics⟧.

    The spans may overlap or coincide (the text they share is both bold and italic).
    A context longer than `max_chars` is shown as excerpts around the answers (one, or
    two when they lie far apart), the cuts marked "…"; line breaks become spaces.

    Args:
        context: the paragraph.
        gold_span: `(start, end)` character offsets of the gold answer (end exclusive),
            or None; an empty span marks nothing.
        predicted_span: the same for the prediction (e.g. from
            `kzoo.metrics.squad_prediction_spans`), or None (no answer predicted).
        max_chars: the longest context shown whole.

    Returns:
        markdown text (one paragraph).

    Raises:
        ValueError: a span outside the context or with end < start.
    """
    context = str(context)
    gold = _check_span(gold_span, len(context), "gold_span")
    predicted = _check_span(predicted_span, len(context), "predicted_span")
    spans = sorted(span for span in (gold, predicted) if span is not None)
    windows = [(0, len(context))]
    if len(context) > max_chars:
        margin = max(40, (max_chars - sum(end - start for start, end in spans)) // (2 * max(len(spans), 1)))
        windows = []
        for start, end in spans or [(0, 0)]:
            start, end = max(0, start - margin), min(len(context), end + margin)
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
            else:
                windows.append((start, end))
    text = " … ".join(_marked_text(context, first, last, gold, predicted) for first, last in windows)
    text = ("… " if windows[0][0] > 0 else "") + text + (" …" if windows[-1][1] < len(context) else "")
    return re.sub(r"\r\n|\r|\n", " ", text)


def qa_examples(examples, count=3, max_chars=600):
    """A few questions with their context and the gold and predicted answers highlighted, as markdown.

    Args:
        examples: dicts with `question`, `context`, `gold_span` and `predicted_span`
            (character spans as for `highlight_answers`; `predicted_span` None when no
            answer was predicted); the first `count` are shown.
        count: how many questions.
        max_chars: contexts longer than this are shown as an excerpt around the answers.

    Returns:
        markdown: a legend line, then per question the question, the highlighted
        context, and the two answers with their SQuAD exact match and F1.
    """
    blocks = ["<strong>bold</strong>: gold answer · ⟦<em>italics</em>⟧: predicted answer"]
    for number, example in enumerate(list(examples)[:count], start=1):
        context = example["context"]
        gold_span, predicted_span = example["gold_span"], example["predicted_span"]
        gold = context[gold_span[0]:gold_span[1]] if gold_span else ""
        predicted = context[predicted_span[0]:predicted_span[1]] if predicted_span else ""
        scores = (f"exact match {answer_exact_match(predicted, gold):.0f}, F1 {answer_f1(predicted, gold):.2f}"
                  if gold else "no gold answer")
        blocks.append(f"**{number}. {escape_markdown(example['question'])}**<br>\n"
                      f"{highlight_answers(context, gold_span, predicted_span, max_chars)}<br>\n"
                      f"gold: <strong>{escape_markdown(gold) or '(none)'}</strong> · predicted: "
                      f"⟦<em>{escape_markdown(predicted) or '(no answer)'}</em>⟧ ({scores})")
    return "\n\n".join(blocks)


# --- generation --------------------------------------------------------------------------------


def generation_settings(settings):
    """One markdown line naming the decoding settings used, e.g. "*Decoding:* strategy `greedy` · ...".

    Args:
        settings: `{option: value}` as passed to `kzoo.generate.generate` (strategy,
            max_new_tokens, temperature, ...), in the order to show.
    """
    parts = [f"{escape_markdown(name)} <code>{escape_markdown(value)}</code>" for name, value in settings.items()]
    return "*Decoding:* " + " · ".join(parts)


def side_by_side_table(columns, numbered=True):
    """Columns of texts side by side as a markdown table (e.g. source, reference, output).

    Args:
        columns: `{title: list of strings}`, all lists of the same length; cells are
            escaped with `table_cell` (a `|` or newline in a text stays in its cell).
        numbered: start each row with its number.

    Raises:
        ValueError: columns of different lengths.
    """
    lengths = {title: len(texts) for title, texts in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}.")
    titles = list(columns)
    rows = [[table_cell(text) for text in row] for row in zip(*columns.values(), strict=True)]
    if numbered:
        titles = ["#", *titles]
        rows = [[str(number), *row] for number, row in enumerate(rows, start=1)]
    return markdown_table([table_cell(title) for title in titles], rows)


# --- masked language modelling ------------------------------------------------------------------


def masked_predictions(examples, count=3):
    """A few masked-LM inputs with the model's top predictions at each masked position, as markdown.

    Args:
        examples: dicts with `tokens` (the input tokens as the model saw them, strings,
            padding left out), `positions` (the masked positions, indices into
            `tokens`), `gold` (the original token at each of them) and `predictions` (per
            position, a list of `(token, probability)` pairs, likeliest first); the first
            `count` are shown.
        count: how many examples.

    Returns:
        markdown: per example the input with the masked positions in bold, then a table
        of position, input token (`[MASK]`, a random token or the original, as BERT's
        masking chose), gold token and the top predictions with probabilities, the
        gold one in bold.

    Raises:
        ValueError: `positions`, `gold` and `predictions` of different lengths, or a
            position outside `tokens`.
    """
    blocks = []
    for number, example in enumerate(list(examples)[:count], start=1):
        tokens, positions = [str(token) for token in example["tokens"]], [int(p) for p in example["positions"]]
        gold, predictions = list(example["gold"]), list(example["predictions"])
        if not len(positions) == len(gold) == len(predictions):
            raise ValueError(f"example {number}: {len(positions)} positions, {len(gold)} gold tokens and "
                             f"{len(predictions)} prediction lists; give one of each per masked position.")
        if any(not 0 <= p < len(tokens) for p in positions):
            raise ValueError(f"example {number}: a masked position in {positions} is outside its {len(tokens)} "
                             "tokens.")
        masked = set(positions)
        sentence = " ".join(f"<strong>{escape_markdown(t)}</strong>" if i in masked else escape_markdown(t)
                            for i, t in enumerate(tokens))
        rows = []
        for position, truth, top in zip(positions, gold, predictions, strict=True):
            guesses = ", ".join((f"<strong>{table_cell(token)}</strong>" if token == truth else table_cell(token))
                                + f" ({probability:.2f})" for token, probability in top)
            rows.append([str(position), table_cell(tokens[position]), table_cell(truth), guesses])
        blocks.append(f"**{number}.** {sentence}\n\n"
                      + markdown_table(["position", "input", "gold", "top predictions"], rows))
    return "\n\n".join(blocks)
