"""One packer for training and serving: every sentence pair is packed into the same row by the training pipeline
(`kzoo.data.classification_dataset`), the tokenizer's `encode_pair`, a reloaded exported `classify_pair` and
Hugging Face's `BertTokenizerFast(truncation="longest_first")`.

Texts are built from a tiny vocabulary of whole words, so a text of n words is n tokens; the first text uses
"a" words and the second "b" words, so a row that swapped or shifted a token between the texts differs.
"""

import numpy as np
import pytest
import tensorflow as tf

from kzoo import data, text
from kzoo.text import packing

MAX_WORDS = 40
SEQUENCE_LENGTHS = (32, 31, 17)  # budgets 29 (odd: the case that once differed), 28, 14
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAIRS = [(a, b) for a in range(MAX_WORDS + 1) for b in range(MAX_WORDS + 1)]


def _words(prefix, count):
    return " ".join(f"{prefix}{i}" for i in range(count))


FIRSTS = [_words("a", a) for a, _ in PAIRS]
SECONDS = [_words("b", b) for _, b in PAIRS]


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory):
    path = tmp_path_factory.mktemp("packing") / "vocab.txt"
    words = [f"{prefix}{i}" for prefix in "ab" for i in range(MAX_WORDS)]
    path.write_text("\n".join(SPECIAL + words) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(vocab_txt):
    return text.WordPieceTokenizer.from_files(vocab_txt, lowercase=True)


def _training_rows(tokenizer, sequence_length):
    records = [{"text": a, "pair": b, "label": "x"} for a, b in zip(FIRSTS, SECONDS, strict=True)]
    ids = tokenizer.special_token_ids
    dataset = data.classification_dataset(
        records, tokenizer, data.LabelVocabulary.from_labels(["x"]), sequence_length=sequence_length,
        cls_id=ids["cls"], sep_id=ids["sep"], pad_id=tokenizer.pad_id, text_pair_key="pair", batch_size=len(PAIRS),
    )
    features, _ = next(iter(dataset))
    return {name: value.numpy() for name, value in features.items()}


@pytest.mark.parametrize("sequence_length", SEQUENCE_LENGTHS)
def test_training_encode_pair_and_hugging_face_pack_every_pair_alike(tokenizer, vocab_txt, sequence_length):
    from transformers import BertTokenizerFast

    train = _training_rows(tokenizer, sequence_length)
    served = tokenizer.encode_pair(FIRSTS, SECONDS, sequence_length=sequence_length)
    hugging_face = BertTokenizerFast(vocab=str(vocab_txt), do_lower_case=True)
    assert hugging_face.vocab_size == len(SPECIAL) + 2 * MAX_WORDS  # the file really was loaded
    reference = hugging_face(
        FIRSTS, SECONDS, max_length=sequence_length, truncation="longest_first", padding="max_length"
    )
    np.testing.assert_array_equal(train["token_ids"], served["token_ids"].numpy())
    np.testing.assert_array_equal(train["segment_ids"], served["segment_ids"].numpy())
    np.testing.assert_array_equal(train["padding_mask"], served["padding_mask"].numpy().astype(np.int32))
    np.testing.assert_array_equal(train["token_ids"], np.array(reference["input_ids"]))
    np.testing.assert_array_equal(train["segment_ids"], np.array(reference["token_type_ids"]))
    np.testing.assert_array_equal(train["padding_mask"], np.array(reference["attention_mask"]))


def test_the_odd_token_goes_to_the_longer_text(tokenizer):
    # The example: bert_classify's sequence_length=32 leaves 29 tokens for lengths (20, 16).
    keep_a, keep_b = packing.longest_first(tf.constant([20, 16, 15]), tf.constant([16, 20, 15]), 29)
    assert keep_a.numpy().tolist() == [15, 14, 14] and keep_b.numpy().tolist() == [14, 15, 15]


def test_pack_example_inside_tf_data_equals_the_batch_packer():
    first, second = tf.range(5, 25), tf.range(30, 46)
    options = dict(sequence_length=32, start_ids=(2,), end_ids=(3,), pad_id=0)
    one = tf.data.Dataset.from_tensors((first, second)).map(lambda a, b: packing.pack_example(a, b, **options))
    row = next(iter(one))
    batch = packing.pack(tf.RaggedTensor.from_tensor(first[None]), tf.RaggedTensor.from_tensor(second[None]),
                         **options)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(row[name].numpy(), batch[name].numpy()[0])


def test_waterfall_gives_the_second_segment_what_the_first_leaves():
    keep_a, keep_b = packing.waterfall(tf.constant([3, 40]), tf.constant([40, 3]), 10)
    assert keep_a.numpy().tolist() == [3, 10] and keep_b.numpy().tolist() == [7, 0]


def test_a_prompt_keeps_its_last_tokens_after_the_start_ids_left_padded():
    tokens = tf.ragged.constant([[5, 6, 7], [8], []], dtype=tf.int32)
    cut = packing.pack_prompt(tokens, start_ids=(1,), sequence_length=3, pad_id=9)
    assert cut["token_ids"].numpy().tolist() == [[5, 6, 7], [9, 1, 8], [9, 9, 1]]
    assert cut["padding_mask"].numpy().tolist() == [[True] * 3, [False, True, True], [False, False, True]]
    whole = packing.pack_prompt(tokens, start_ids=(1,), pad_id=9)
    assert whole["token_ids"].numpy().tolist() == [[1, 5, 6, 7], [9, 9, 1, 8], [9, 9, 9, 1]]
    assert cut["token_ids"].dtype == tf.int32 and cut["padding_mask"].dtype == tf.bool


def test_prompt_budget_leaves_learned_positions_for_the_new_tokens():
    assert packing.prompt_budget(100, 48, max_new_tokens=8) == 40
    assert packing.prompt_budget(10, 48, max_new_tokens=8) == 10
    assert packing.prompt_budget(100, None, max_new_tokens=8) == 100  # rotary/relative positions: no limit
    assert packing.prompt_budget(100, 8, max_new_tokens=8) == 0  # no room: the caller raises


def test_a_row_without_room_for_the_special_tokens_is_refused():
    with pytest.raises(ValueError, match="larger than the 3 special tokens"):
        packing.pack(tf.ragged.constant([[1]]), tf.ragged.constant([[2]]), sequence_length=3, start_ids=(2,),
                     end_ids=(3,))
    with pytest.raises(ValueError, match="truncate must be one of"):
        packing.pack(tf.ragged.constant([[1]]), tf.ragged.constant([[2]]), sequence_length=8, truncate="random")


@pytest.mark.slow  # one export (~15 s on CPU)
@pytest.mark.backend("tensorflow", reason="it reloads a SavedModel export, which needs TensorFlow")
def test_exported_classify_pair_sees_the_training_rows(tokenizer, vocab_txt, tmp_path_factory):
    """The reloaded `classify_pair` answers as the model does on the training pipeline's rows.

    Pairs near and past the budget (the ones truncation touches). The model's outputs stand in for its input rows:
    float32 rounding of a 1681-row graph batch vs eager differs by ~1.5e-6, while a row that gives one token to
    the other text moves a probability by more than 1e-2 with these randomized weights (checked below).
    """
    from kzoo.export import savedmodel
    from kzoo.export.serving import ServingSettings
    from tests.export import savedmodel_fixtures as fixtures

    sequence_length = SEQUENCE_LENGTHS[0]
    model = fixtures.build("classifier", tokenizer.vocabulary_size)
    result = savedmodel.export_savedmodel(
        model, tmp_path_factory.mktemp("export"), tokenizer=tokenizer, labels=fixtures.CLASSES, model_name="pairs",
        settings=ServingSettings(sequence_length=sequence_length, max_new_tokens=8),
        tokenizer_files={"vocab.txt": str(vocab_txt)},
    )
    classify_pair = tf.saved_model.load(result.path).signatures["classify_pair"]
    chosen = [i for i, (a, b) in enumerate(PAIRS) if a + b >= sequence_length - 6]
    served = classify_pair(text=tf.constant([FIRSTS[i] for i in chosen]),
                           text_pair=tf.constant([SECONDS[i] for i in chosen]))["probabilities"].numpy()
    train = {name: value[chosen] for name, value in _training_rows(tokenizer, sequence_length).items()}
    np.testing.assert_allclose(served, tf.nn.softmax(model(train, training=False)).numpy(), atol=1e-5)

    pair = PAIRS.index((20, 16))  # packed 15 + 14; the old training rows had 14 + 15
    row = chosen.index(pair)
    skewed = {name: value[row:row + 1].copy() for name, value in train.items()}
    ids = tokenizer.special_token_ids
    first, second = tokenizer.tokenize(FIRSTS[pair])[:14], tokenizer.tokenize(SECONDS[pair])[:15]
    skewed["token_ids"][0] = np.concatenate([[ids["cls"]], first, [ids["sep"]], second, [ids["sep"]]])
    skewed["segment_ids"][0] = [0] * 16 + [1] * 16
    moved = np.abs(tf.nn.softmax(model(skewed, training=False)).numpy() - served[row:row + 1]).max()
    assert moved > 1e-2
