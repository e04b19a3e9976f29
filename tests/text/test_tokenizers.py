"""The shared tokenizer API: shapes/dtypes, encode policy, graph mode, dispatch from files and errors."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kzoo import text


@pytest.fixture(params=["bert_uncased", "gpt2", "t5"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def test_tokenize_shapes_and_dtypes(tokenizer):
    batch = tokenizer.tokenize(["hello world", "", "the quick brown fox"])
    assert isinstance(batch, tf.RaggedTensor) and batch.dtype == tf.int32
    assert batch.shape[0] == 3 and batch.row_lengths().numpy()[1] == 0
    single = tokenizer.tokenize("the quick brown fox")
    assert isinstance(single, tf.Tensor) and single.dtype == tf.int32 and single.shape.rank == 1
    assert single.numpy().tolist() == batch[2].numpy().tolist()
    # the same from a tf.string tensor, a NumPy array and bytes
    assert tokenizer.tokenize(tf.constant(["hello world"])).to_list() == batch[:1].to_list()
    assert tokenizer.tokenize(np.array(["hello world"])).to_list() == batch[:1].to_list()
    assert tokenizer.tokenize([b"hello world"]).to_list() == batch[:1].to_list()


def test_vocabulary_lookups(tokenizer):
    assert tokenizer.vocabulary_size > 100
    for token_id in (0, 7, tokenizer.vocabulary_size - 1):
        assert tokenizer.token_to_id(tokenizer.id_to_token(token_id)) == token_id
    with pytest.raises(ValueError, match="outside the vocabulary|not in the vocabulary"):
        tokenizer.id_to_token(tokenizer.vocabulary_size + 5)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tokenizer.token_to_id("certainly-not-a-token-§§§")


def test_special_token_ids(bert_uncased, gpt2, t5):
    assert bert_uncased.special_token_ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    end = gpt2.token_to_id("<|endoftext|>")
    assert gpt2.special_token_ids == {"bos": end, "eos": end}
    assert t5.special_token_ids == {"pad": 0, "eos": 1, "unk": 2}


def test_tokenize_in_tf_function_graph_mode(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(strings):
        return tokenizer.tokenize(strings)

    texts = ["hello world", "café ✓ 日本語", ""]
    graph = tokenize(tf.constant(texts))
    assert isinstance(graph, tf.RaggedTensor)
    assert graph.to_list() == tokenizer.tokenize(texts).to_list()
    # and in a tf.data pipeline
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(tokenizer.tokenize)
    assert next(iter(dataset)).to_list() == graph.to_list()


def test_encode_in_tf_function(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(strings):
        return tokenizer.encode(strings, sequence_length=8)

    outputs = encode(tf.constant(["hello world", "a b c d e f g h i j k"]))
    assert outputs["token_ids"].shape == (2, 8) and outputs["token_ids"].dtype == tf.int32
    assert outputs["padding_mask"].dtype == tf.bool


def test_encode_policy_bert(bert_uncased):
    cls, sep, pad = 2, 3, 0
    words = bert_uncased.tokenize(["the quick brown fox jumps over the lazy dog"])[0].numpy().tolist()
    outputs = bert_uncased.encode(["the quick brown fox jumps over the lazy dog", ""], sequence_length=6)
    ids, mask = outputs["token_ids"].numpy(), outputs["padding_mask"].numpy()
    assert ids.shape == mask.shape == (2, 6)
    assert ids[0].tolist() == [cls, *words[:4], sep]  # truncated at the end, [SEP] kept
    assert ids[1].tolist() == [cls, sep, pad, pad, pad, pad]  # padded at the end
    assert mask[1].tolist() == [True, True, False, False, False, False]
    bare = bert_uncased.encode(["the quick"], sequence_length=4, add_special_tokens=False)["token_ids"]
    assert bare.numpy()[0].tolist() == words[:2] + [pad, pad]


def test_encode_policy_gpt2_and_t5(gpt2, t5):
    ids = gpt2.tokenize(["hello world"])[0].numpy().tolist()
    end = gpt2.special_token_ids["eos"]
    outputs = gpt2.encode(["hello world"], sequence_length=len(ids) + 2)
    assert outputs["token_ids"].numpy()[0].tolist() == ids + [end, end]  # padded with <|endoftext|>
    assert outputs["padding_mask"].numpy()[0].tolist() == [True] * len(ids) + [False, False]
    framed = gpt2.with_special_tokens(add_bos=True, add_eos=True)
    assert framed.encode(["hello world"], sequence_length=len(ids) + 3)["token_ids"].numpy()[0].tolist() == [
        end,
        *ids,
        end,
        end,
    ]
    pieces = t5.tokenize(["hello world"])[0].numpy().tolist()
    outputs = t5.encode(["hello world"], sequence_length=len(pieces) + 2)
    assert outputs["token_ids"].numpy()[0].tolist() == pieces + [1, 0]  # </s> then <pad>
    short = t5.encode(["hello world"], sequence_length=2)["token_ids"].numpy()[0].tolist()
    assert short == [pieces[0], 1]  # truncated at the end, </s> kept


def test_start_and_end_ids_are_what_encode_puts_around_a_text(bert_uncased, gpt2, t5):
    end = gpt2.special_token_ids["eos"]
    framings = {
        bert_uncased: ((2,), (3,)), gpt2: ((), ()), gpt2.with_special_tokens(add_bos=True): ((end,), ()), t5: ((), (1,))
    }
    for tokenizer, (start_ids, end_ids) in framings.items():
        assert (tokenizer.start_ids, tokenizer.end_ids) == (start_ids, end_ids)
        ids = tokenizer.tokenize("hello world").numpy().tolist()
        row = tokenizer.encode(["hello world"], sequence_length=len(ids) + 2)["token_ids"].numpy()[0].tolist()
        assert row[: len(start_ids) + len(ids) + len(end_ids)] == [*start_ids, *ids, *end_ids]


def test_encode_pair_shapes_and_segments(bert_uncased):
    outputs = bert_uncased.encode_pair(["hello world"], ["the dog"], sequence_length=10)
    a = bert_uncased.tokenize("hello world").numpy().tolist()
    b = bert_uncased.tokenize("the dog").numpy().tolist()
    assert outputs["token_ids"].numpy()[0].tolist() == [2, *a, 3, *b, 3] + [0] * (10 - 3 - len(a) - len(b))
    n_a, n_b = len(a) + 2, len(b) + 1
    assert outputs["segment_ids"].numpy()[0].tolist() == [0] * n_a + [1] * n_b + [0] * (10 - n_a - n_b)
    with pytest.raises(ValueError, match="sequence_length"):
        bert_uncased.encode_pair(["a"], ["b"], sequence_length=3)


def test_encode_rejects_bad_sequence_length(t5):
    with pytest.raises(ValueError, match="sequence_length"):
        t5.encode(["hello"], sequence_length=1)


def test_the_old_max_length_argument_still_works_with_a_deprecation_warning(bert_uncased):
    expected = bert_uncased.encode(["the dog"], sequence_length=6)["token_ids"].numpy()
    with pytest.warns(DeprecationWarning, match=r"encode\(max_length=...\) is now encode\(sequence_length=...\)"):
        old = bert_uncased.encode(["the dog"], max_length=6)["token_ids"].numpy()
    assert (old == expected).all()
    with pytest.warns(DeprecationWarning, match="encode_pair"):
        assert bert_uncased.encode_pair(["a"], ["b"], max_length=6)["token_ids"].shape == (1, 6)
    with pytest.raises(TypeError, match="pass sequence_length only"):
        bert_uncased.encode(["a"], 6, max_length=6)
    with pytest.raises(ValueError, match="sequence_length must be an integer larger than the 2 special tokens"):
        bert_uncased.encode(["a"])


def test_detokenize_shapes(tokenizer):
    ids = tokenizer.tokenize(["hello world", "the dog"])
    batch = tokenizer.detokenize(ids)
    assert batch.dtype == tf.string and batch.shape == (2,)
    single = tokenizer.detokenize(ids[0].numpy().tolist())
    assert single.shape == () and single.numpy() == batch.numpy()[0]


def test_non_string_input_raises(tokenizer):
    for bad in (3, [1, 2], tf.constant([1, 2]), None, ["ok", 5]):
        with pytest.raises(TypeError, match="text"):
            tokenizer.tokenize(bad)
    with pytest.raises(TypeError, match="1-D"):
        tokenizer.tokenize(tf.constant([["nested"]]))


def test_invalid_utf8_is_replaced_not_fatal(bert_uncased, gpt2, t5):
    broken = [b"caf\xc3 ok \xff\xfe end"]
    # WordPiece drops U+FFFD like BERT's clean_text: same ids as without the broken bytes
    assert bert_uncased.tokenize(broken).to_list() == bert_uncased.tokenize(["caf ok  end"]).to_list()
    # byte-level BPE and SentencePiece see U+FFFD ("\xef\xbf\xbd") in place of each invalid byte
    replaced = ["caf\ufffd ok \ufffd\ufffd end"]
    assert gpt2.tokenize(broken).to_list() == gpt2.tokenize(replaced).to_list()
    assert t5.tokenize(broken).to_list() == t5.tokenize(replaced).to_list()


def test_special_token_text_is_plain_text(bert_uncased):
    ids = bert_uncased.tokenize("a [SEP] b").numpy().tolist()
    assert bert_uncased.special_token_ids["sep"] not in ids


def test_tokenizer_from_files_dispatch(vocab_files, tmp_path):
    bert = text.tokenizer_from_files({"vocab.txt": vocab_files["cased"]})
    assert isinstance(bert, text.WordPieceTokenizer) and bert.lowercase and bert.strip_accents
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"do_lower_case": False}))
    cased = text.tokenizer_from_files({"vocab.txt": vocab_files["cased"], "tokenizer_config.json": config})
    assert not cased.lowercase and not cased.strip_accents
    gpt2 = text.tokenizer_from_files({"vocab.json": vocab_files["vocab_json"], "merges.txt": vocab_files["merges"]})
    assert isinstance(gpt2, text.BytePairTokenizer)
    t5 = text.tokenizer_from_files({"spiece.model": vocab_files["spiece"], "tokenizer.json": config})
    assert isinstance(t5, text.SentencePieceTokenizer)
    keras_hub_names = {"vocabulary.spm": vocab_files["spiece"]}
    assert isinstance(text.tokenizer_from_files(keras_hub_names), text.SentencePieceTokenizer)
    with pytest.raises(ValueError, match=r"hold vocab\.json but not merges\.txt: a byte-level BPE needs both"):
        text.tokenizer_from_files({"vocab.json": vocab_files["vocab_json"]})  # merges.txt missing


def test_tokenizer_from_files_reads_hf_checkpoint_listing(vocab_files, tmp_path):
    """The dict `kzoo.convert` returns: basename -> absolute path, config files included."""
    shutil.copy(vocab_files["uncased"], tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "strip_accents": False}))
    files = {p.name: str(p) for p in tmp_path.iterdir()}
    tokenizer = text.tokenizer_from_files(files)
    assert tokenizer.lowercase and not tokenizer.strip_accents


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("vocab.txt", "", "is empty"),
        ("vocab.txt", "hello\nworld\n", "no '\\[UNK\\]' line"),
        ("vocab.json", "{not json", "not valid JSON"),
        ("vocab.json", "{}", "empty"),
        ("spiece.model", "", "is empty"),
        ("spiece.model", "this is not a protobuf", "not a valid SentencePiece model"),
    ],
)
def test_bad_vocabulary_files_raise_value_error_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    files = {name: str(path)}
    if name == "vocab.json":
        (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
        files["merges.txt"] = str(tmp_path / "merges.txt")
    with pytest.raises(ValueError, match=match) as error:
        text.tokenizer_from_files(files)
    assert str(path) in str(error.value)


def test_missing_and_mismatched_files(tmp_path, vocab_files):
    with pytest.raises(ValueError, match="does not exist"):
        text.WordPieceTokenizer.from_files(tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match="does not exist"):
        text.SentencePieceTokenizer.from_files(tmp_path / "spiece.model")
    merges = tmp_path / "merges.txt"
    merges.write_text("#version: 0.2\nzz§ qq§\n")
    with pytest.raises(ValueError, match="does not match vocab.json"):
        text.BytePairTokenizer.from_files(vocab_files["vocab_json"], merges)
