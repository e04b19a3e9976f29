"""Entity-level precision/recall/F1 for BIO (IOB2) tags, and sub-word → word predictions.

Entities follow conlleval (and seqeval's default mode): an entity is `(type, start,
end)` over word positions, `end` inclusive; it starts at `B-X`, or at `I-X` when the
previous tag is `O` or of another type; it continues over `I-X` of the same type and
ends before `O`, `B-*` or a tag of another type. An entity counts as correct only when
type, start and end all match. IOB1 input (entities opened by `I-`) is read the same way.
"""

import numpy as np

from kzoo.metrics._common import check_same_length, divide, f_measure


def _split_tag(tag, where):
    """`(prefix, type)` of one tag: `("O", None)`, `("B", type)` or `("I", type)`."""
    if not isinstance(tag, str):
        raise ValueError(f"{where}: tags must be strings like 'B-PER', got {tag!r} ({type(tag).__name__}).")
    if tag == "O":
        return "O", None
    if tag[:1] in ("B", "I") and (len(tag) == 1 or tag[1] == "-"):
        return tag[0], tag[2:]
    raise ValueError(f"{where}: tag {tag!r} is not a BIO tag; expected 'O', 'B-<type>' or 'I-<type>'.")


def bio_entities(tags):
    """The entities of one sentence of BIO tags.

    Args:
        tags: a sequence of tag strings (`"O"`, `"B-PER"`, `"I-PER"`, ...).

    Returns:
        list of `(type, start, end)` tuples in order, `end` inclusive (as seqeval's
        `get_entities`); `[]` when there is none.

    Raises:
        ValueError: a tag that is not `O`, `B-<type>` or `I-<type>` (the message gives
            its position).

    Example:
        bio_entities(["B-PER", "I-PER", "O", "I-LOC", "I-ORG"])
        # [("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 4)]
    """
    entities, current, start = [], None, 0
    for position, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, f"position {position}")
        if current is not None and (prefix != "I" or kind != current):
            entities.append((current, start, position - 1))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current, start = kind, position
    if current is not None:
        entities.append((current, start, len(tags) - 1))
    return entities


def _sentences(tags):
    """A list of tag lists; a flat sequence of strings is one sentence."""
    tags = list(tags)
    if tags and isinstance(tags[0], str):
        return [tags]
    return [list(sentence) for sentence in tags]


def _scores(correct, predicted, true):
    precision, recall = divide(correct, predicted), divide(correct, true)
    return {"precision": precision, "recall": recall, "f1": f_measure(precision, recall),
            "num_correct": correct, "num_predicted": predicted, "num_true": true}


def entity_scores(true_tags, predicted_tags):
    """Entity-level (micro) precision, recall and F1, overall and per entity type.

    The same numbers as conlleval and seqeval's `precision_score`/`recall_score`/
    `f1_score`/`classification_report` in default mode (see the module docstring).

    Args:
        true_tags: gold tags, a list of sentences (each a list of tag strings); a flat
            list of strings is read as one sentence.
        predicted_tags: predicted tags, the same number of sentences and the same
            length per sentence (for sub-word model outputs see `word_level_tags`).

    Returns:
        dict: `precision`, `recall`, `f1` (floats in [0, 1]), `num_correct`,
        `num_predicted`, `num_true` (entity counts), and `per_type`: a dict from each
        entity type found in either side (sorted) to a dict with the same six keys.
        A ratio whose denominator is 0 (no predicted or no gold entities) is 0.0.

    Raises:
        ValueError: different numbers of sentences, a sentence whose two tag lists
            differ in length, or a tag that is not BIO.
    """
    true_sentences = _sentences(true_tags)
    predicted_sentences = _sentences(predicted_tags)
    check_same_length(true_sentences, predicted_sentences, "true_tags (sentences)", "predicted_tags (sentences)")
    counts = {}  # type -> [correct, predicted, true]
    for index, (true, predicted) in enumerate(zip(true_sentences, predicted_sentences, strict=True)):
        if len(true) != len(predicted):
            raise ValueError(f"sentence {index}: true_tags has {len(true)} tags but predicted_tags has "
                             f"{len(predicted)}; both must tag the same words.")
        try:
            true_entities, predicted_entities = set(bio_entities(true)), set(bio_entities(predicted))
        except ValueError as error:
            raise ValueError(f"sentence {index}, {error}") from None
        for kind, *_ in true_entities:
            counts.setdefault(kind, [0, 0, 0])[2] += 1
        for kind, *_ in predicted_entities:
            counts.setdefault(kind, [0, 0, 0])[1] += 1
        for kind, *_ in true_entities & predicted_entities:
            counts[kind][0] += 1
    totals = [sum(values[i] for values in counts.values()) for i in range(3)]
    result = _scores(*totals)
    result["per_type"] = {kind: _scores(*counts[kind]) for kind in sorted(counts)}
    return result


def word_level_tags(subword_predictions, first_subword_mask, labels=None, *, num_words=None, pad_label="O"):
    """Per-sub-word predictions → one prediction per word, read at each word's first sub-token.

    Matches `kzoo.data.token_classification_dataset`: a word's label sits on its first
    sub-token, whose sample weight is 1; the other sub-tokens, [CLS], [SEP] and padding
    have weight 0 (and label 0). Pass that sample weight as `first_subword_mask`; the
    same call on the dataset's label rows gives the gold tags of the words kept.

    Args:
        subword_predictions: class ids `(batch, sequence)`, or scores/logits
            `(batch, sequence, num_labels)`, arg-maxed over the last axis.
        first_subword_mask: `(batch, sequence)`, nonzero exactly at each word's first
            sub-token.
        labels: None to return class ids, or the id → tag mapping: a sequence of tag
            strings, or a `kzoo.data.LabelVocabulary` (its `labels`).
        num_words: optional sequence of `batch` word counts before truncation: the
            dataset drops the words beyond `sequence_length - 2` sub-tokens; those get
            `pad_label`, so the result lines up with the full gold sentences (the usual,
            conservative way to score a truncated sentence).
        pad_label: the tag (or, with `labels=None`, the class id) for truncated words.

    Returns:
        list of `batch` lists: the tags (or ids) of each sentence's words, in order.

    Raises:
        ValueError: mismatched shapes, an id outside `labels`, a row with more marked
            positions than its `num_words`, or a string `pad_label` with `labels=None`.
    """
    predictions = np.asarray(subword_predictions)
    mask = np.asarray(first_subword_mask)
    if mask.ndim != 2:
        raise ValueError(f"first_subword_mask must be (batch, sequence), got shape {mask.shape}.")
    if predictions.ndim == 3 and predictions.shape[:2] == mask.shape:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != mask.shape:
        raise ValueError(f"subword_predictions must be (batch, sequence) ids or (batch, sequence, num_labels) "
                         f"scores matching first_subword_mask {mask.shape}, got shape {predictions.shape}.")
    labels = getattr(labels, "labels", labels)
    if labels is None and num_words is not None and isinstance(pad_label, str):
        raise ValueError("With labels=None the results are class ids: pass pad_label as a class id.")
    if num_words is not None:
        num_words = list(num_words)
        check_same_length(num_words, mask, "num_words", "first_subword_mask (batch)")
    rows = []
    for index, (row, marks) in enumerate(zip(predictions, mask, strict=True)):
        ids = [int(i) for i in row[marks != 0]]
        if labels is not None:
            bad = [i for i in ids if not 0 <= i < len(labels)]
            if bad:
                raise ValueError(f"row {index}: class id {bad[0]} is outside the {len(labels)} labels.")
            ids = [labels[i] for i in ids]
        if num_words is not None:
            if len(ids) > num_words[index]:
                raise ValueError(f"row {index}: first_subword_mask marks {len(ids)} words but num_words is "
                                 f"{num_words[index]}.")
            ids += [pad_label] * (num_words[index] - len(ids))
        rows.append(ids)
    return rows
