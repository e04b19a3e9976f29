"""Causal LM pipeline: documents packed into fixed windows for `GPTCausalLM`."""

import tensorflow as tf

from kzoo.data import _common


def _as_text_dataset(texts):
    if isinstance(texts, tf.data.Dataset):
        return texts
    return tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), dtype=tf.string))


def pack_token_stream(token_ids, sequence_length):
    """Packs a dataset of 1-D id tensors into windows of `sequence_length + 1`.

    The elements (documents, or chunks of several) are concatenated into one stream and cut into windows that
    overlap by one token (window `i` is `stream[i*L : i*L + L + 1]`), so every token is predicted exactly once;
    the incomplete tail is dropped.
    """
    return _common.cut_windows(token_ids, sequence_length + 1, sequence_length)


def causal_lm_dataset(
    texts, tokenizer, *, sequence_length, eos_id, batch_size=None, shuffle=False, seed=0,
    input_context=None, shuffle_buffer=10_000, drop_remainder=True, start_ids=(),
):
    """Causal LM examples: `({"token_ids", "padding_mask"}, next_tokens, sample_weight)`.

    Each document is tokenized, preceded by `start_ids` and followed by `eos_id`; the stream is packed into
    windows of `sequence_length + 1` (see `pack_token_stream`); inputs are the first
    `sequence_length` ids and targets the last (shifted by one). Windows are full, so
    `padding_mask` and `sample_weight` are all ones.

    Args:
        texts: a list of document strings or a `tf.data.Dataset` of scalar strings.
        tokenizer: see `kzoo.data._common` (the tokenizer protocol).
        sequence_length: model input length.
        eos_id: separator appended to every document.
        start_ids: ids put before every document: the tokenizer's `start_ids` for a tokenizer that starts each
            text with a BOS (Llama-2's `<s>`, Llama-3's `<|begin_of_text|>`), as its `encode`, Hugging Face's
            tokenizer and `kzoo.generate`'s prompts do; () (GPT-2, Qwen2): nothing.
        batch_size: global batch size (None: unbatched).
        shuffle, seed, shuffle_buffer: seeded shuffle of the packed windows.
        input_context: a `tf.distribute.InputContext`; shards documents before packing.

    Shapes: `token_ids`, `padding_mask`, targets int32 `(b, sequence_length)`; sample
    weight float32 `(b, sequence_length)`.
    """
    _common.check_special_ids(eos_id=eos_id)
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be positive, got {sequence_length}.")
    documents = _common.shard_source(_as_text_dataset(texts), input_context)
    start_ids = tuple(start_ids)
    _common.check_special_ids(**{f"start_ids[{i}]": value for i, value in enumerate(start_ids)})
    windows = pack_token_stream(_common.token_stream(documents, tokenizer, start_ids, [eos_id]), sequence_length)
    windows = _common.shuffle_source(windows, shuffle, seed, shuffle_buffer)

    def to_example(window):
        window = tf.ensure_shape(window, [sequence_length + 1])
        ones = tf.ones([sequence_length], tf.int32)
        features = {"token_ids": window[:-1], "padding_mask": ones}
        return features, window[1:], tf.cast(ones, tf.float32)

    examples = windows.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)
