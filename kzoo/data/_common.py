"""Shared pieces of the kzoo.data pipelines: the tokenizer protocol, packing, sharding.

Tokenizer protocol: any object with `tokenize(strings)` that maps a 1-D `tf.string`
tensor to a `tf.RaggedTensor` of ids `(n, None)` and works inside `tf.data.Dataset.map`
(keras-hub tokenizers, kzoo.text tokenizers). Special ids (`cls_id`, `sep_id`, `pad_id`,
`mask_id`, `eos_id`) and `vocabulary_size` are passed explicitly to each pipeline.

Randomness: every random choice made inside a `map` uses stateless ops seeded with
`(seed, index of the element in the source)`, so results do not depend on
parallelism, sharding or shuffling, and the same seed gives the same data.
"""

import numpy as np
import tensorflow as tf

from kzoo.text import packing

AUTOTUNE = tf.data.AUTOTUNE


def tokenize_batch(tokenizer, strings):
    """Tokenizes a 1-D string tensor into an int32 `RaggedTensor` `(n, None)`."""
    ids = tokenizer.tokenize(strings)
    if isinstance(ids, list):  # keras-hub converts ragged outputs to lists outside tf.data
        ids = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1) if ids else tf.ragged.constant([[]], tf.int32)[:0]
    elif not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(ids)
    return tf.cast(ids, tf.int32)


def tokenize_one(tokenizer, text):
    """Tokenizes a scalar string tensor into int32 ids `(n,)`; usable inside `map`."""
    return tokenize_batch(tokenizer, tf.reshape(text, [1]))[0]


# Documents tokenized per call in `token_stream`: one call on a batch of texts costs little more than one on a single
# text (the tokenizer graph's per-call overhead dominates short documents).
DOCUMENTS_PER_CALL = 64


def token_stream(documents, tokenizer, start_ids=(), end_ids=()):
    """The documents' ids as one stream, in order, each framed as `start_ids + ids + end_ids`.

    Args:
        documents: a dataset of scalar strings.
        start_ids, end_ids: int sequences (e.g. a BOS before, an eos after every document).

    Returns:
        A dataset of 1-D int32 chunks whose concatenation is the stream: the documents are tokenized
        `DOCUMENTS_PER_CALL` at a time, in parallel, order kept.
    """
    frame = [tf.constant([int(i) for i in ids], tf.int32, shape=[len(ids)]) for ids in (start_ids, end_ids)]

    def framed(texts):  # (n,) strings -> (total,) ids
        ids = tokenize_batch(tokenizer, texts)
        count = tf.shape(texts)[0]
        start, end = (tf.RaggedTensor.from_tensor(tf.tile(frame_ids[None], [count, 1])) for frame_ids in frame)
        return tf.concat([start, ids, end], axis=1).flat_values

    return documents.batch(DOCUMENTS_PER_CALL).map(framed, num_parallel_calls=AUTOTUNE, deterministic=True)


def cut_windows(chunks, width, shift):
    """Windows `stream[i*shift : i*shift + width]` of the concatenation of a dataset of 1-D chunks; the
    incomplete tail is dropped.

    Vectorized: a `scan` carries the stream's uncut end (shorter than `width`) from one chunk to the next and
    emits a chunk's complete windows in one gather, so the cost is per chunk, not per token (tf.data's
    per-token `unbatch().window(...)` spent ~0.3 ms per window).
    """
    dtype = chunks.element_spec.dtype

    def cut(leftover, ids):
        stream = tf.concat([leftover, ids], 0)
        count = tf.maximum((tf.size(stream) - width) // shift + 1, 0)  # windows that fit
        starts = tf.range(count) * shift
        windows = tf.gather(stream, starts[:, None] + tf.range(width)[None, :])
        return stream[count * shift:], windows

    return chunks.scan(tf.zeros([0], dtype), cut).unbatch()


def tokenize_python(tokenizer, texts, chunk_size=4096):
    """Tokenizes a list of Python strings eagerly; returns a list of lists of ints."""
    out = []
    for begin in range(0, len(texts), chunk_size):
        chunk = tf.constant(list(texts[begin:begin + chunk_size]), dtype=tf.string)
        out.extend(tokenize_batch(tokenizer, chunk).to_list())
    return out


def element_seed(seed, index, salt=0):
    """The stateless seed `(2,)` int32 for element `index` of the source (and a salt per use)."""
    index = tf.cast(index, tf.int64)
    return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + salt, index])


def pad_to(ids, length, pad_id):
    """Pads (or truncates) a 1-D int32 tensor to exactly `length`, shape set statically."""
    ids = ids[:length]
    ids = tf.pad(ids, [[0, length - tf.shape(ids)[0]]], constant_values=pad_id)
    return tf.ensure_shape(ids, [length])


def pack_bert(first, second, sequence_length, cls_id, sep_id, pad_id, pair_start_ids=(), pair_segments=True):
    """`[CLS] A [SEP] (B [SEP])` with segment ids and padding mask, all int32 `(sequence_length,)`.

    `second` may be None for single-segment inputs. Packed by `kzoo.text.packing` (a pair is truncated
    "longest_first"), the packer the tokenizers' `encode_pair` and the exported signatures use. RoBERTa-style
    tokenizers frame a pair as `<s> A </s></s> B </s>` in one segment: `pair_start_ids` go before B, and
    `pair_segments=False` gives every token segment id 0 (see `pair_framing`).
    """
    packed = packing.pack_example(first, second, sequence_length=sequence_length, start_ids=(cls_id,),
                                  end_ids=(sep_id,), pad_id=pad_id, pair_start_ids=tuple(pair_start_ids))
    if "segment_ids" not in packed or not pair_segments:
        packed["segment_ids"] = tf.zeros([sequence_length], tf.int32)
    return {
        "token_ids": packed["token_ids"],
        "segment_ids": packed["segment_ids"],
        "padding_mask": tf.cast(packed["padding_mask"], tf.int32),
    }


def pair_framing(tokenizer):
    """`pack_bert`'s pair options for `tokenizer`: BERT's (nothing between the texts, B in segment 1) unless the
    tokenizer says otherwise, as kzoo's RoBERTa and XLM-R tokenizers do (`pair_start_ids`, `pair_segment_ids`)."""
    return {"pair_start_ids": tuple(getattr(tokenizer, "pair_start_ids", ())),
            "pair_segments": bool(getattr(tokenizer, "pair_segment_ids", True))}


def check_special_ids(vocabulary_size=None, **ids):
    """Raises if a special id is missing, negative or outside the vocabulary."""
    for name, value in ids.items():
        if value is None or int(value) < 0:
            raise ValueError(f"{name} must be a non-negative token id, got {value!r}.")
        if vocabulary_size is not None and int(value) >= vocabulary_size:
            raise ValueError(f"{name}={value} is outside the vocabulary (vocabulary_size={vocabulary_size}).")


def shard_source(dataset, input_context):
    """Shards `dataset` by `tf.distribute.InputContext` (one shard per input pipeline)."""
    if input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return dataset


def finish(dataset, *, batch_size, input_context=None, drop_remainder=True):
    """Batches, prefetches and sets deterministic, distribution-friendly options.

    With `input_context` (from `strategy.distribute_datasets_from_function`) the source
    was sharded by hand, `batch_size` is the global batch and each pipeline batches
    `input_context.get_per_replica_batch_size(batch_size)`; auto-sharding is then OFF.
    Without it `batch_size` is the global batch and auto-sharding is DATA (the sources
    are in memory or already read, so there are no files to shard by).
    """
    if batch_size is not None:
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options).prefetch(AUTOTUNE)


def shuffle_source(dataset, shuffle, seed, buffer_size=10_000):
    """Seeded shuffle (a new order each epoch, the same sequence of orders for a seed)."""
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset


def ragged_slices(lists, dtype=tf.int32):
    """A `tf.data.Dataset` of 1-D tensors from a list of Python lists (may be empty lists)."""
    lengths = np.array([len(item) for item in lists], dtype=np.int64)
    flat = np.array([value for item in lists for value in item], dtype=dtype.as_numpy_dtype)
    return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_lengths(flat, lengths))
