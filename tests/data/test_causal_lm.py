import numpy as np
import pytest
import tensorflow as tf

from kzoo import data
from tests.data.helpers import CLS, EOS, WhitespaceTokenizer, corpus


def _texts():
    return [" ".join(document) for document in corpus(num_documents=12)]


def test_packing_preserves_the_concatenation_exactly():
    tokenizer = WhitespaceTokenizer()
    texts = [" ".join(document) for document in corpus(num_documents=150, sentences=1)]  # 3 calls of 64
    stream = []
    for ids in tokenizer.tokenize(tf.constant(texts)).to_list():
        stream += ids + [EOS]
    length = 16
    dataset = data.causal_lm_dataset(texts, tokenizer, sequence_length=length, eos_id=EOS, batch_size=4)
    inputs, targets = [], []
    for features, target, weight in dataset:
        assert features["token_ids"].dtype == tf.int32 and features["padding_mask"].dtype == tf.int32
        assert features["token_ids"].shape == (4, length) and weight.dtype == tf.float32
        np.testing.assert_array_equal(features["padding_mask"], 1)
        inputs.append(features["token_ids"].numpy())
        targets.append(target.numpy())
    inputs, targets = np.concatenate(inputs), np.concatenate(targets)
    num = len(inputs)
    assert num == ((len(stream) - 1) // length) // 4 * 4
    np.testing.assert_array_equal(inputs.reshape(-1), stream[: num * length])
    np.testing.assert_array_equal(targets.reshape(-1), stream[1 : num * length + 1])


@pytest.mark.parametrize("length", [1, 3, 8])
def test_pack_token_stream_cuts_the_concatenation_across_element_boundaries(length):
    """Elements of any size (empty, shorter than a window, many windows long) give the windows of their
    concatenation: window i is stream[i*L : i*L + L + 1], the incomplete tail dropped."""
    sizes = [0, 1, 2, 5, 0, 17, 3, 1, 30, 0, 8, 9, 2]
    stream = np.arange(sum(sizes), dtype=np.int32) + 100
    pieces = np.split(stream, np.cumsum(sizes)[:-1])
    elements = tf.data.Dataset.from_generator(lambda: iter(pieces), output_signature=tf.TensorSpec([None], tf.int32))
    windows = [window.numpy() for window in data.pack_token_stream(elements, length)]
    count = (len(stream) - 1) // length
    assert len(windows) == count
    for i, window in enumerate(windows):
        np.testing.assert_array_equal(window, stream[i * length: i * length + length + 1])


def test_start_ids_go_before_every_document():
    """A Llama tokenizer's BOS starts each document, as it starts each prompt kzoo.generate encodes."""
    tokenizer, texts = WhitespaceTokenizer(), _texts()[:3]
    stream = []
    for ids in tokenizer.tokenize(tf.constant(texts)).to_list():
        stream += [CLS] + ids + [EOS]
    dataset = data.causal_lm_dataset(texts, tokenizer, sequence_length=len(stream) - 1, eos_id=EOS, start_ids=(CLS,))
    features, target, _ = next(iter(dataset))
    np.testing.assert_array_equal(features["token_ids"], stream[:-1])
    np.testing.assert_array_equal(target, stream[1:])
    with pytest.raises(ValueError, match=r"start_ids\[0\] must be a non-negative token id"):
        data.causal_lm_dataset(texts, tokenizer, sequence_length=4, eos_id=EOS, start_ids=(-1,))


def test_shuffle_is_deterministic_with_a_seed_and_shards_split_the_documents():
    tokenizer = WhitespaceTokenizer()
    kwargs = dict(sequence_length=8, eos_id=EOS, batch_size=2, shuffle=True)

    def first_epoch(seed):
        return np.concatenate([f["token_ids"].numpy() for f, _, _ in data.causal_lm_dataset(
            _texts(), tokenizer, seed=seed, **kwargs)])

    np.testing.assert_array_equal(first_epoch(3), first_epoch(3))
    assert not np.array_equal(first_epoch(3), first_epoch(4))

    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    dataset = data.causal_lm_dataset(_texts(), tokenizer, sequence_length=8, eos_id=EOS, batch_size=4,
                                     input_context=context)
    features, _, _ = next(iter(dataset))
    assert features["token_ids"].shape == (2, 8)  # per-replica batch
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF


def test_distribute_datasets_from_function():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    texts = _texts()

    def dataset_fn(input_context):
        return data.causal_lm_dataset(texts, WhitespaceTokenizer(), sequence_length=8, eos_id=EOS, batch_size=4,
                                      input_context=input_context)

    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    features, targets, _ = next(iter(distributed))
    assert features["token_ids"].shape == targets.shape == (4, 8)
