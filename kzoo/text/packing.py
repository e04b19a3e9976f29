"""Packing one or two token segments into fixed-length model inputs: the one rule training and serving share.

`pack` is the only place in kzoo that decides how a text (or a text pair) becomes a row of `sequence_length` ids:
how many tokens of each segment are kept, where the special tokens go and how the row is padded. The `kzoo.data`
pipelines call it per example inside `tf.data` (`pack_example`), the tokenizers' `encode`/`encode_pair` and the
exported text signatures call it per batch on ragged tensors, so a model is served exactly the rows it was
trained on. Modelled on keras-hub's `MultiSegmentPacker`; TensorFlow ops only, so it runs inside a SavedModel.

Row layout: `start a end` for one segment, `start a end b end` for a pair (BERT: `[CLS] a [SEP] b [SEP]`),
then `pad_id` up to `sequence_length`. `segment_ids` is 0 on `start a end`, 1 on `b end`, 0 on padding;
`padding_mask` is True on real tokens (special tokens included).

Truncation (always from the END of a segment):
* one segment: its first `sequence_length - len(start) - len(end)` tokens are kept.
* "longest_first" (Hugging Face's default for pairs): the shorter text is kept whole if the longer one can absorb
  the cut; otherwise both get `budget // 2` and the longer one (the second on a tie) gets the odd token.
* "waterfall": the first segment keeps what fits, the second gets the rest (QA: a question already cut to its
  own budget, then the context).

Causal-LM prompts (`pack_prompt`, shared by `kzoo.generate` and the exported `generate` signatures) follow another
rule: `start prompt` with no end token (it would end the prompt), the LAST tokens kept (the continuation follows the
prompt's end), padded on the LEFT so that every row's last token sits in the same column.
"""

import warnings

import numpy as np
import tensorflow as tf

TRUNCATIONS = ("longest_first", "waterfall")


def renamed_length(sequence_length, max_length, caller):
    """`sequence_length`, or the `max_length` a caller written for kzoo 0.1 passed (the argument's old name, kept for
    one release with a DeprecationWarning naming the new one)."""
    if max_length is not None:
        if sequence_length is not None:
            raise TypeError(f"{caller}: pass sequence_length only (max_length is its old name).")
        warnings.warn(f"{caller}(max_length=...) is now {caller}(sequence_length=...); the old name will stop working "
                      "in the next release.", DeprecationWarning, stacklevel=3)
        return max_length
    return sequence_length  # None too: `check_budget` says what a row length must be


def check_budget(sequence_length, num_special, name="sequence_length"):
    """The number of segment tokens a row of `sequence_length` holds beside `num_special` special tokens.

    Raises:
        ValueError: `sequence_length` is not an integer larger than `num_special` (the message calls it `name`).
    """
    if not isinstance(sequence_length, (int, np.integer)) or sequence_length <= num_special:
        raise ValueError(
            f"{name} must be an integer larger than the {num_special} special tokens added, got {sequence_length!r}."
        )
    return int(sequence_length) - num_special


def longest_first(length_a, length_b, budget):
    """How many tokens of a and b to keep so that the pair fits `budget`, like Hugging Face's "longest_first".

    Args:
        length_a, length_b: (b,) or () int lengths.
        budget: int or int scalar tensor, the tokens a and b may use together.

    Returns:
        `(keep_a, keep_b)`, int64 with the shape of the lengths.
    """
    length_a, length_b = tf.cast(length_a, tf.int64), tf.cast(length_b, tf.int64)
    budget = tf.cast(budget, tf.int64)
    short = tf.minimum(length_a, length_b)
    keep_long = tf.where(short > budget, short, tf.maximum(short, budget - short))
    both = short + keep_long > budget
    keep_short = tf.where(both, budget // 2, short)
    keep_long = tf.where(both, budget // 2 + budget % 2, keep_long)
    a_longer = length_a > length_b
    keep_a = tf.where(a_longer, keep_long, keep_short)
    keep_b = tf.where(a_longer, keep_short, keep_long)
    return tf.minimum(keep_a, length_a), tf.minimum(keep_b, length_b)


def waterfall(length_a, length_b, budget):
    """`(keep_a, keep_b)`: a keeps what fits in `budget`, b the rest. Shapes as `longest_first`."""
    length_a, length_b = tf.cast(length_a, tf.int64), tf.cast(length_b, tf.int64)
    keep_a = tf.minimum(length_a, tf.cast(budget, tf.int64))
    return keep_a, tf.minimum(length_b, tf.cast(budget, tf.int64) - keep_a)


def keep_first(tokens, counts):
    """The first counts[i] tokens of each row of ragged (b, None) `tokens`; counts (b,) int."""
    positions = tf.ragged.range(tokens.row_lengths())
    return tf.ragged.boolean_mask(tokens, positions < tf.expand_dims(tf.cast(counts, tf.int64), 1))


def constant_rows(values, batch):
    """(batch, len(values)) ragged rows of the int32 `values`."""
    row = tf.constant(list(values), tf.int32)
    return tf.RaggedTensor.from_tensor(tf.tile(row[tf.newaxis], [batch, 1]))


def _framed(tokens, start_ids, end_ids):
    """`start tokens end` per row of ragged (b, None) int32 `tokens`."""
    batch = tokens.nrows()
    parts = ([constant_rows(start_ids, batch)] if start_ids else []) + [tokens]
    parts += [constant_rows(end_ids, batch)] if end_ids else []
    return tf.concat(parts, axis=1) if len(parts) > 1 else tokens


def pack(first, second=None, *, sequence_length, start_ids=(), end_ids=(), pad_id=0, truncate="longest_first",
         pair_start_ids=()):
    """One or two ragged segments -> fixed-length rows (see the module docstring for the policy).

    Args:
        first: (b, None) ragged int32 token ids (no special tokens).
        second: optional (b, None) ragged int32, the pair's second text.
        sequence_length: int, the length of every output row (special tokens included).
        start_ids: ids put before the first segment (e.g. `[CLS]`).
        end_ids: ids put after each segment (e.g. `[SEP]`).
        pad_id: int, fills rows up to `sequence_length`.
        truncate: "longest_first" or "waterfall", how a pair shares its budget.
        pair_start_ids: ids put before the second segment, after the first one's end ids (RoBERTa: `</s>`, so a
            pair reads `<s> a </s></s> b </s>`); they belong to segment 1.

    Returns:
        dict with "token_ids" (b, L) int32, "padding_mask" (b, L) bool and, for a pair, "segment_ids" (b, L) int32.

    Raises:
        ValueError: `sequence_length` leaves no room beside the special tokens, or an unknown `truncate`.
    """
    first = tf.cast(first, tf.int32)
    if second is None:
        budget = check_budget(sequence_length, len(start_ids) + len(end_ids))
        ids, segments = _framed(first[:, :budget], start_ids, end_ids), None
    else:
        if truncate not in TRUNCATIONS:
            raise ValueError(f"truncate must be one of {TRUNCATIONS}, got {truncate!r}.")
        budget = check_budget(sequence_length, len(start_ids) + 2 * len(end_ids) + len(pair_start_ids))
        second = tf.cast(second, tf.int32)
        rule = longest_first if truncate == "longest_first" else waterfall
        keep_a, keep_b = rule(first.row_lengths(), second.row_lengths(), budget)
        head = _framed(keep_first(first, keep_a), start_ids, end_ids)
        tail = _framed(keep_first(second, keep_b), tuple(pair_start_ids), end_ids)
        ids = tf.concat([head, tail], axis=1)
        segments = tf.concat([tf.zeros_like(head), tf.ones_like(tail)], axis=1)
    packed = {
        "token_ids": ids.to_tensor(default_value=pad_id, shape=[None, sequence_length]),
        "padding_mask": tf.sequence_mask(ids.row_lengths(), sequence_length),
    }
    if segments is not None:
        packed["segment_ids"] = segments.to_tensor(default_value=0, shape=[None, sequence_length])
    return packed


def pack_example(first, second=None, **options):
    """`pack` for one example: (n,) int32 segment(s) -> (sequence_length,) rows; usable inside `tf.data` map.

    Takes the keyword arguments of `pack`; returns its dict with each value of shape (sequence_length,).
    """
    def batch_of_one(ids):
        return tf.RaggedTensor.from_tensor(tf.reshape(tf.cast(ids, tf.int32), [1, -1]))

    packed = pack(batch_of_one(first), None if second is None else batch_of_one(second), **options)
    return {name: tf.ensure_shape(value[0], [options["sequence_length"]]) for name, value in packed.items()}


def prompt_budget(sequence_length, num_positions, max_new_tokens):
    """The most prompt tokens a causal LM keeps: `sequence_length`, less where learned positions must leave room.

    Args:
        sequence_length: int, the longest prompt asked for.
        num_positions: int, the model's learned positions, or None (rotary/relative positions: no limit).
        max_new_tokens: int, the tokens generated after the prompt.

    Returns:
        int, `min(sequence_length, num_positions - max_new_tokens)`; below 1 when no prompt fits (the caller says
        what to change).
    """
    if num_positions is None:
        return sequence_length
    return min(sequence_length, num_positions - max_new_tokens)


def pack_prompt(tokens, *, start_ids=(), sequence_length=None, pad_id=0):
    """Causal-LM prompts -> left-padded rows (see the module docstring): start tokens, the last `sequence_length` kept.

    Args:
        tokens: (b, None) ragged int32 token ids (no special tokens).
        start_ids: ids put before each prompt (a tokenizer's `start_ids`, e.g. GPT-2's bos); cut like any other
            token when a prompt is longer than `sequence_length`.
        sequence_length: int or int scalar tensor, the most tokens a row keeps; None keeps all.
        pad_id: int, fills rows on the left up to the longest kept row.

    Returns:
        dict with "token_ids" (b, w) int32 and "padding_mask" (b, w) bool (True on kept tokens), w the longest kept
        row.
    """
    tokens = _framed(tf.cast(tokens, tf.int32), start_ids, ())
    lengths = tokens.row_lengths()
    if sequence_length is not None:
        first_kept = lengths - tf.minimum(lengths, tf.cast(sequence_length, tf.int64))
        tokens = tf.ragged.boolean_mask(tokens, tf.ragged.range(lengths) >= first_kept[:, None])
        lengths = tokens.row_lengths()
    right = tokens.to_tensor(default_value=pad_id)  # (b, w) padded on the right
    width = tf.shape(right, out_type=tf.int64)[1]
    source = tf.range(width)[None, :] - (width - lengths)[:, None]  # (b, w): column of `right` each column shows
    kept = source >= 0
    ids = tf.where(kept, tf.gather(right, tf.maximum(source, 0), batch_dims=1), pad_id)
    return {"token_ids": ids, "padding_mask": kept}
