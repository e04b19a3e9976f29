"""Seq2seq pipelines: source/target pairs (teacher forcing) and T5 span corruption."""

import tensorflow as tf

from kzoo.data import _common
from kzoo.text import packing


def seq2seq_features(source_ids, target_ids, *, encoder_sequence_length, decoder_sequence_length, pad_id,
                     decoder_start_id):
    """Teacher-forcing features for `Seq2SeqLM`.

    `source_ids`/`target_ids` are 1-D int32 and should already end with EOS. Returns
    `(features, targets, sample_weight)`: encoder ids/mask `(encoder_sequence_length,)`,
    decoder ids = targets shifted right starting with `decoder_start_id`, decoder mask
    `(decoder_sequence_length,)`, targets int32 `(decoder_sequence_length,)`, sample weight float32 =
    the target mask.
    """
    target_ids = target_ids[:decoder_sequence_length]
    decoder_ids = tf.concat([tf.constant([decoder_start_id], tf.int32), target_ids[:-1]], 0)
    target_mask = tf.ones_like(target_ids)
    source_ids = source_ids[:encoder_sequence_length]
    features = {
        "encoder_token_ids": _common.pad_to(source_ids, encoder_sequence_length, pad_id),
        "encoder_padding_mask": _common.pad_to(tf.ones_like(source_ids), encoder_sequence_length, 0),
        "decoder_token_ids": _common.pad_to(decoder_ids, decoder_sequence_length, pad_id),
        "decoder_padding_mask": _common.pad_to(target_mask, decoder_sequence_length, 0),
    }
    targets = _common.pad_to(target_ids, decoder_sequence_length, pad_id)
    return features, targets, tf.cast(_common.pad_to(target_mask, decoder_sequence_length, 0), tf.float32)


def seq2seq_dataset(
    pairs, tokenizer, *, encoder_sequence_length, decoder_sequence_length, pad_id, eos_id, decoder_start_id,
    target_tokenizer=None,
    batch_size=None, shuffle=False, seed=0, input_context=None, shuffle_buffer=10_000, drop_remainder=False,
):
    """Source/target pairs → `Seq2SeqLM` examples (teacher forcing).

    Args:
        pairs: a list of `(source, target)` strings (or dicts with "source"/"target", as
            from `read_jsonl`/`read_csv`), or a dataset of `(source, target)` strings.
        tokenizer: tokenizes both sides unless `target_tokenizer` is given.
        encoder_sequence_length, decoder_sequence_length: padded lengths; EOS is appended, then truncated.
        pad_id, eos_id, decoder_start_id: special ids (T5: 0, 1, 0).

    Returns:
        A dataset of `(features, targets, sample_weight)` with features
        `encoder_token_ids`, `encoder_padding_mask` int32 `(b, encoder_sequence_length)`,
        `decoder_token_ids`, `decoder_padding_mask` int32 `(b, decoder_sequence_length)`; targets
        int32 `(b, decoder_sequence_length)`; sample weight float32 `(b, decoder_sequence_length)`.
    """
    _common.check_special_ids(pad_id=pad_id, eos_id=eos_id, decoder_start_id=decoder_start_id)
    target_tokenizer = target_tokenizer or tokenizer
    if not isinstance(pairs, tf.data.Dataset):
        pairs = [(pair["source"], pair["target"]) if isinstance(pair, dict) else tuple(pair) for pair in pairs]
        pairs = tf.data.Dataset.from_tensor_slices(
            (tf.constant([pair[0] for pair in pairs], tf.string), tf.constant([pair[1] for pair in pairs], tf.string))
        )
    pairs = _common.shuffle_source(_common.shard_source(pairs, input_context), shuffle, seed, shuffle_buffer)

    def with_eos(text_tokenizer, text, length):
        # The packer's one-segment rule, as the served `tokenizer.encode`: the end is cut to leave room for EOS.
        row = packing.pack_example(_common.tokenize_one(text_tokenizer, text), sequence_length=length,
                                   end_ids=(eos_id,), pad_id=pad_id)
        return tf.boolean_mask(row["token_ids"], row["padding_mask"])

    def to_example(source, target):
        source_ids = with_eos(tokenizer, source, encoder_sequence_length)
        target_ids = with_eos(target_tokenizer, target, decoder_sequence_length)
        return seq2seq_features(
            source_ids, target_ids, encoder_sequence_length=encoder_sequence_length,
            decoder_sequence_length=decoder_sequence_length,
            pad_id=pad_id, decoder_start_id=decoder_start_id,
        )

    examples = pairs.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)


def span_lengths(length, noise_density=0.15, mean_noise_span_length=3.0):
    """`(num_noise_tokens, num_noise_spans)` for a sequence of `length` (Python ints, as T5)."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def corrupted_lengths(length, noise_density=0.15, mean_noise_span_length=3.0):
    """Lengths of the corrupted inputs and of the targets (each with EOS) for `length` raw tokens."""
    num_noise, num_spans = span_lengths(length, noise_density, mean_noise_span_length)
    return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def _random_segmentation(num_items, num_segments, seed):
    """Splits `num_items` into `num_segments` positive parts at random; int32 `(num_segments,)`."""
    first_in_segment = tf.range(num_items - 1) < num_segments - 1
    order = tf.argsort(tf.random.stateless_uniform([num_items - 1], seed=seed))
    first_in_segment = tf.pad(tf.gather(first_in_segment, order), [[1, 0]])
    segment_id = tf.cumsum(tf.cast(first_in_segment, tf.int32))
    return tf.math.unsorted_segment_sum(tf.ones_like(segment_id), segment_id, num_segments)


def noise_mask(length, seed, noise_density=0.15, mean_noise_span_length=3.0):
    """T5's random spans noise mask: bool `(length,)`, spans of mean length 3 covering 15%.

    `length` is a Python int (T5 works on fixed-length chunks); the first span is
    never noise (Raffel et al. 2020, sec. 3.1.4; t5.data.preprocessors).
    """
    num_noise, num_spans = span_lengths(length, noise_density, mean_noise_span_length)
    seed = tf.cast(seed, tf.int64)
    noise_spans = _random_segmentation(num_noise, num_spans, seed)
    nonnoise_spans = _random_segmentation(length - num_noise, num_spans, seed + [0, 1 << 40])
    interleaved = tf.reshape(tf.stack([nonnoise_spans, noise_spans], axis=1), [num_spans * 2])
    span_starts = tf.cumsum(interleaved)[:-1]
    span_start_indicator = tf.scatter_nd(span_starts[:, None], tf.ones_like(span_starts), [length])
    span_num = tf.cumsum(span_start_indicator)
    return tf.equal(span_num % 2, 1)


def span_corruption(token_ids, seed, *, vocabulary_size, eos_id, noise_density=0.15, mean_noise_span_length=3.0):
    """Corrupts a fixed-length 1-D id tensor into T5 `(inputs, targets)`, each ending with EOS.

    Each noise span is replaced in the inputs by a sentinel, `vocabulary_size - 1` for
    the first span, then counting down; the targets list each sentinel followed by
    the span it replaced. Replacing each sentinel in the inputs by its target span
    gives back `token_ids`.
    """
    length = int(token_ids.shape[0])
    mask = noise_mask(length, seed, noise_density, mean_noise_span_length)
    eos = tf.constant([eos_id], tf.int32)
    return (
        tf.concat([_sentinelize(token_ids, mask, vocabulary_size), eos], 0),
        tf.concat([_sentinelize(token_ids, tf.logical_not(mask), vocabulary_size), eos], 0),
    )


def _sentinelize(token_ids, mask, vocabulary_size):
    """Replaces each run of masked tokens by one sentinel (counting down from the top) and drops the rest."""
    previous = tf.pad(mask[:-1], [[1, 0]])
    first_of_span = tf.logical_and(mask, tf.logical_not(previous))
    sentinel = vocabulary_size - tf.cumsum(tf.cast(first_of_span, tf.int32))
    ids = tf.where(first_of_span, sentinel, token_ids)
    return tf.boolean_mask(ids, tf.logical_not(tf.logical_and(mask, previous)))


def span_corruption_dataset(
    texts, tokenizer, *, raw_length, vocabulary_size, pad_id, eos_id, decoder_start_id, noise_density=0.15,
    mean_noise_span_length=3.0, batch_size=None, shuffle=False, seed=0, input_context=None,
    shuffle_buffer=10_000, drop_remainder=True,
):
    """T5 span-corruption pretraining examples in the `Seq2SeqLM` format.

    Documents are tokenized, joined with `eos_id`, cut into chunks of `raw_length`
    tokens, and each chunk is corrupted with `span_corruption` seeded by
    `(seed, chunk index)`. Encoder and decoder lengths are
    `corrupted_lengths(raw_length, ...)` (fixed for a given `raw_length`).

    Returns:
        `(features, targets, sample_weight)` as `seq2seq_dataset`.
    """
    _common.check_special_ids(vocabulary_size, pad_id=pad_id, eos_id=eos_id, decoder_start_id=decoder_start_id)
    encoder_sequence_length, decoder_sequence_length = corrupted_lengths(raw_length, noise_density,
                                                                         mean_noise_span_length)
    texts = texts if isinstance(texts, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(
        tf.constant(list(texts), tf.string))
    texts = _common.shard_source(texts, input_context)
    stream = _common.token_stream(texts, tokenizer, end_ids=[eos_id])
    chunks = _common.cut_windows(stream, raw_length, raw_length).enumerate()
    chunks = _common.shuffle_source(chunks, shuffle, seed, shuffle_buffer)

    def to_example(index, chunk):
        chunk = tf.ensure_shape(chunk, [raw_length])
        inputs, targets = span_corruption(
            chunk, _common.element_seed(seed, index), vocabulary_size=vocabulary_size, eos_id=eos_id,
            noise_density=noise_density, mean_noise_span_length=mean_noise_span_length,
        )
        return seq2seq_features(
            inputs, targets, encoder_sequence_length=encoder_sequence_length,
            decoder_sequence_length=decoder_sequence_length,
            pad_id=pad_id, decoder_start_id=decoder_start_id,
        )

    examples = chunks.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)


__all__ = [
    "corrupted_lengths", "noise_mask", "seq2seq_dataset", "seq2seq_features",
    "span_corruption", "span_corruption_dataset", "span_lengths",
]
