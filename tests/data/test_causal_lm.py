import numpy as np
import pytest
import tensorflow as tf

from kzoo import data
from tests.data.helpers import CLS, EOS, WhitespaceTokenizer, corpus


def _texts():
    return [" ".join(document) for document in corpus(num_documents=12)]


def test_packing_preserves_the_concatenation_exactly():
    tokenizer = WhitespaceTokenizer()
    texts = _texts()
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
