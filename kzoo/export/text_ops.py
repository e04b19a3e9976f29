"""Text pre- and post-processing of the exported signatures, written with TensorFlow ops only.

Everything here runs inside the SavedModel graph (no Python at serving time), so a client sends raw strings and
gets labels, entity spans or answer text back.

Words are whitespace-separated (`tf.strings.split`); each word is tokenized on its own, as the kzoo NER and
SQuAD pipelines do, so a word's first sub-token carries its tag and an answer span maps back to whole words.
Shapes: b texts, W words in a row, T sub-tokens, L the packed length.
"""

import tensorflow as tf

OUTSIDE_TAG = "O"


def with_rank(tensor, rank, name):
    """`tensor` after a run-time check that it has `rank` dimensions, with that rank set statically.

    The exported signatures declare inputs of unknown rank on purpose: a loaded SavedModel (and TF Serving)
    does not check a request's shape against the signature, so a check folded away at trace time would never
    run; this one runs on every request.
    """
    shape = "a scalar" if rank == 0 else f"{rank}-D" + (" (batch,)" if rank == 1 else " (batch, length)")
    assertion = tf.debugging.Assert(tf.equal(tf.rank(tensor), rank), [tf.constant(f"{name} must be {shape}.")])
    with tf.control_dependencies([assertion]):
        return tf.ensure_shape(tf.identity(tensor), [None] * rank)


def check_batch(strings, name):
    """`strings` checked to be (b,) with b > 0 (else a clear InvalidArgumentError)."""
    strings = with_rank(strings, 1, name)
    assertion = tf.debugging.Assert(
        tf.size(strings) > 0, [tf.constant(f"{name} is an empty batch: send at least one string.")]
    )
    with tf.control_dependencies([assertion]):
        return tf.identity(strings)


def check_pair(first, second, names):
    """Two (b,) string inputs checked like `check_batch`, and to hold the same number of strings."""
    first = check_batch(first, names[0])
    second = with_rank(second, 1, names[1])
    same = tf.debugging.assert_equal(
        tf.size(first), tf.size(second), message=f"{names[0]} and {names[1]} must hold the same number of strings."
    )
    with tf.control_dependencies([same]):
        return tf.identity(first), tf.identity(second)


def word_pieces(tokenizer, strings):
    """Whitespace words of each text and their sub-tokens (each word tokenized on its own, after the tokenizer's
    `word_prefix`).

    Args:
        tokenizer: a `kzoo.text` tokenizer.
        strings: (b,) `tf.string`.

    Returns:
        `(words, pieces)`: words `(b, W)` ragged string; pieces `(b, W, None)` ragged int32 (a word may have none).
    """
    from kzoo.text.base import to_string_tensor

    words = tf.strings.split(to_string_tensor(strings))
    word_prefix = getattr(tokenizer, "word_prefix", "")  # byte-level BPE: " " (see kzoo.text.base.Tokenizer)
    inputs = tf.strings.join([word_prefix, words.flat_values]) if word_prefix else words.flat_values
    pieces = tokenizer.tokenize(inputs)  # (total words, None)
    return words, tf.RaggedTensor.from_row_lengths(pieces, words.row_lengths())


def first_piece_positions(pieces):
    """For each word, the index of its first sub-token within its row's sub-token sequence.

    Args:
        pieces: `(b, W, None)` ragged int32 from `word_pieces`.

    Returns:
        `(b, W)` ragged int32 (a word without sub-tokens gets the position its next word would start at).
    """
    counts = tf.cast(pieces.row_lengths(axis=2), tf.int32)  # (b, W) ragged
    flat = counts.flat_values
    before = tf.cumsum(flat, exclusive=True)  # over the whole batch
    # One extra entry so that rows without words (row start == number of words) gather in range.
    extended = tf.concat([before, [tf.reduce_sum(flat)]], 0)
    row_first = tf.gather(extended, tf.cast(counts.row_starts(), tf.int32))
    start = before - tf.gather(row_first, tf.cast(counts.value_rowids(), tf.int32))
    return counts.with_flat_values(start)


def word_tags(tag_ids, first_positions, labels, offset, kept):
    """The tag string of every word: the prediction at its first sub-token.

    Args:
        tag_ids: (b, L) int32 argmax of the token logits.
        first_positions: (b, W) ragged int32 from `first_piece_positions`.
        labels: (C,) `tf.string` tag names.
        offset: int, packed position of sub-token 0 (1 after `[CLS]`).
        kept: int, sub-tokens that fit in a row; words starting later are tagged "O".

    Returns:
        (b, W) ragged `tf.string`.
    """
    flat = first_positions.flat_values
    rows = tf.cast(first_positions.value_rowids(), tf.int32)
    seen = flat < kept
    position = tf.minimum(flat, kept - 1) + offset
    ids = tf.gather_nd(tag_ids, tf.stack([rows, position], axis=1))
    names = tf.where(seen, tf.gather(labels, ids), OUTSIDE_TAG)
    return first_positions.with_flat_values(names)


def word_has_pieces(pieces):
    """(b, W) ragged bool, True for words with at least one sub-token."""
    return pieces.row_lengths(axis=2) > 0


def entities(words, tags):
    """Entity spans from BIO tags (conlleval rules): `B-X` starts an X; `I-X` continues an X, or starts one
    after anything else; a tag without a `B-`/`I-` prefix other than "O" acts as `I-`.

    Args:
        words: (b, W) ragged `tf.string`.
        tags: (b, W) ragged `tf.string`.

    Returns:
        dict of dense tensors, E the most entities in a row: "entity_types" and "entity_texts" (b, E) string
        (texts are the words joined by single spaces), "entity_starts" / "entity_ends" (b, E) int32 word indices
        (end exclusive; -1 where a row has fewer entities), "num_entities" (b,) int32.
    """
    flat_tags = tags.flat_values
    rows = tf.cast(tags.value_rowids(), tf.int32)
    batch = tf.cast(tags.nrows(), tf.int32)
    prefix = tf.strings.substr(flat_tags, 0, 2)
    kind = tf.strings.regex_replace(flat_tags, "^[BI]-", "")
    inside = tf.not_equal(flat_tags, OUTSIDE_TAG)
    count = tf.shape(flat_tags)[0]
    index = tf.range(count)
    row_first = tf.gather(tf.cast(tags.row_starts(), tf.int32), rows)
    is_first = tf.equal(index, row_first)
    previous = tf.maximum(index - 1, 0)
    continues = (
        inside
        & ~tf.equal(prefix, "B-")
        & ~is_first
        & tf.gather(inside, previous)
        & tf.equal(tf.gather(kind, previous), kind)
    )
    starts_here = inside & ~continues
    following = tf.minimum(index + 1, tf.maximum(count - 1, 0))
    next_continues = tf.concat([continues[1:], [False]], 0) & tf.equal(tf.gather(rows, following), rows)
    ends_here = inside & ~next_continues
    start_index = tf.cast(tf.where(starts_here)[:, 0], tf.int32)
    end_index = tf.cast(tf.where(ends_here)[:, 0], tf.int32) + 1  # the k-th start pairs with the k-th end
    entity_rows = tf.gather(rows, start_index)
    span_words = tf.gather(words.flat_values, tf.ragged.range(start_index, end_index))
    texts = tf.strings.reduce_join(span_words, axis=1, separator=" ")
    first_of_row = tf.gather(row_first, start_index)

    def per_row(values, default):
        ragged = tf.RaggedTensor.from_value_rowids(values, entity_rows, nrows=batch)
        return ragged.to_tensor(default_value=default)

    by_row = tf.RaggedTensor.from_value_rowids(start_index, entity_rows, nrows=batch)
    return {
        "entity_types": per_row(tf.gather(kind, start_index), ""),
        "entity_texts": per_row(texts, ""),
        "entity_starts": per_row(start_index - first_of_row, -1),
        "entity_ends": per_row(end_index - first_of_row, -1),
        "num_entities": tf.cast(by_row.row_lengths(), tf.int32),
    }


def best_spans(start_logits, end_logits, allowed, max_answer_tokens):
    """The highest-scoring span `start <= end < start + max_answer_tokens` inside `allowed` positions.

    Args:
        start_logits, end_logits: (b, L) float32.
        allowed: (b, L) bool, positions an answer may use (the context's sub-tokens).
        max_answer_tokens: int.

    Returns:
        `(start, end, score)`: (b,) int32 packed positions (end inclusive) and (b,) float32
        `start_logit + end_logit`.
    """
    length = tf.shape(start_logits)[1]
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (b, L, L)
    i = tf.range(length)[:, None]
    j = tf.range(length)[None, :]
    band = (j >= i) & (j < i + max_answer_tokens)
    valid = band[None] & allowed[:, :, None] & allowed[:, None, :]
    scores = tf.where(valid, scores, tf.float32.min)
    flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    return best // length, best % length, tf.reduce_max(flat, axis=-1)


def strip_edge_punctuation(text):
    """Removes punctuation glued to the first or last word of an answer ("Paris." -> "Paris")."""
    return tf.strings.regex_replace(text, r"^[\"'(\[{]+|[\"')\]},.;:!?]+$", "")
