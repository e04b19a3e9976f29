"""Property-based tests (hypothesis) of the kzoo tokenizers: any text in, in-range fixed-length ids out.

The contract pinned here is the one `kzoo/text/base.py` documents:

* text is a `str`, `bytes`, a list/tuple of them, a NumPy string array or a `tf.string` tensor of rank 0 or 1;
  invalid UTF-8 is replaced by U+FFFD (exactly like Python's `bytes.decode("utf-8", "replace")`), never an error;
* anything else (numbers, None, nested lists, rank > 1, non-string tensors) raises TypeError, and nothing else;
* `encode(texts, sequence_length)` gives (b, sequence_length) int32 ids in [0, vocabulary_size) and a bool padding
  mask: the text's tokens cut at the end, framed by the family's special tokens, padded at the end with the pad id;
* `detokenize` takes any ids in [0, vocabulary_size).

Speed: tokenizer ops on ragged tensors cost 10-50 ms per eager call (WordPiece's lower-casing and regex split) but
1-2 ms inside a `tf.function`, so most properties run the documented graph path (`tf.function` with a
`TensorSpec([None], tf.string)` input, as the SavedModel export does) and one property runs the eager Python API.
Each property runs the profile's examples (300 in CI), the eager API's a third of them, the 100,000-character
texts 8. The graph-path properties run under the TensorFlow backend only (the graph is TensorFlow's under every
backend); under JAX the API properties run a tenth of their examples. The whole module is marked slow (CI runs it;
`-m "not slow"` leaves it out of the quick tier).
"""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.text.sentences import sentences

pytestmark = pytest.mark.slow  # hundreds of examples per property: CI runs them, the quick tier does not

# Function-scoped fixtures are fine here: the tokenizers are session fixtures and the graph cache below is meant to
# live for one test (all of its examples), not one example.
# The profile of tests/conftest.py (300 examples in CI, no deadline) under TensorFlow. The tokenizers are
# TensorFlow ops under every Keras backend, so the JAX run keeps a tenth of the examples of the API properties, for
# what differs there (the eager API hands back JAX arrays).
PROPERTY = settings() if keras.backend.backend() == "tensorflow" else settings(
    max_examples=max(1, settings().max_examples // 10))
HUGE = settings(PROPERTY, max_examples=8)
GRAPH_PATH = pytest.mark.backend("tensorflow", reason="the tokenizers' tf.function path is the same TensorFlow graph "
                                 "under every backend: the TensorFlow run tests it")
# The eager API's property is about its input forms (str, bytes, lists, NumPy, tensors, scalars), a small space that
# a third of the examples covers; its graph half is what the graph-path properties below test.
EAGER = settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 3))
HUGE_LENGTH = 100_000

# config -> (special kinds encode puts before the text, after it)
FRAMING = {"bert_uncased": (("cls",), ("sep",)), "gpt2_framed": (("bos",), ("eos",)), "t5": ((), ("eos",))}

# Characters and strings the tokenizers treat specially, mixed into the generated text.
ODD_CHARACTERS = [
    "\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u00a0", "\u00ad", "\u0301", "\u0327",
    "\u0336", "\u05d0", "\u05b7", "\u0627", "\u064b", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202e",
    "\u2028", "\u2029", "\u3000", "\ufeff", "\ufffd", "\ue000", "\U000e0001", "\U0010ffff", "\U00020000",
    "\U0001f600", "\U0001f3fd", "\U0001f468", "\u0130", "\u03a3", "\u00df", "\ufb01",
]
LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]  # only a Python str can hold them
ODD_STRINGS = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "<|endoftext|>", "</s>", "<pad>", "<unk>", "##", "\u2581", " ", "  "]
HOSTS = ["", *ODD_STRINGS, *sentences(200)]
INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x9f\x98",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xef\xbf\xbe",
]

_GRAPHS = {}


@pytest.fixture(autouse=True)
def _fresh_graphs():
    """Traces again in every test: the global `clear_session()` after each test invalidates SentencePiece graphs."""
    _GRAPHS.clear()
    yield
    _GRAPHS.clear()


@pytest.fixture(params=sorted(FRAMING))
def config(request):
    """(name, tokenizer) for each family kzoo ships; GPT-2 framed with bos and eos to exercise both ends."""
    if request.param == "gpt2_framed":
        return request.param, request.getfixturevalue("gpt2").with_special_tokens(add_bos=True, add_eos=True)
    return request.param, request.getfixturevalue(request.param)


# --- strategies ---------------------------------------------------------------------------------------------------

def _splice(parts):
    """(inserted, host, position) -> host with `inserted` at position % (len(host) + 1)."""
    inserted, host, position = parts
    position %= len(host) + 1
    return host[:position] + inserted + host[position:]


def unicode_text(max_size=24, surrogates=False):
    """Any Unicode text (all planes, controls, combining marks, RTL, emoji) spliced into a test sentence (vocabulary
    words, CJK, accents) or a special-token spelling. Few draws per text: hypothesis generation is the main cost."""
    characters = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(ODD_CHARACTERS))
    text = st.tuples(st.text(characters, max_size=max_size), st.sampled_from(HOSTS), st.integers(0, 200)).map(_splice)
    if surrogates:  # spliced in: st.text() does not draw them from st.characters()
        text = st.tuples(st.sampled_from(["", *LONE_SURROGATES]), text, st.integers(0, 200)).map(_splice)
    return text


def utf8_bytes(max_size=16):
    """Bytes: random bytes and an invalid UTF-8 sequence (truncated, overlong, surrogate, > U+10FFFF, stray
    continuation) spliced into UTF-8 text."""
    noise = st.tuples(st.binary(max_size=max_size), st.sampled_from(INVALID_UTF8), st.integers(0, max_size))
    text = unicode_text(max_size=8).map(lambda value: value.encode("utf-8"))
    return st.tuples(noise.map(_splice), text, st.integers(0, 200)).map(_splice)


def python_text():
    """(kind, value): the text forms the eager API accepts, scalar or batch, str and bytes mixed, lone surrogates."""
    item = st.one_of(unicode_text(surrogates=True), utf8_bytes())
    items = st.lists(item, max_size=6)
    return st.one_of(
        item.map(lambda value: ("scalar", value)),
        items.map(lambda values: ("list", values)),
        items.map(lambda values: ("tuple", tuple(values))),
        st.lists(unicode_text(surrogates=True), max_size=6).map(
            lambda values: ("numpy", np.array(values, dtype=str))),
        st.lists(utf8_bytes(), max_size=6).map(lambda values: ("numpy", np.array(values, dtype=bytes))),
        items.map(lambda values: ("tensor", tf.constant(_canonical(values), tf.string, shape=[len(values)]))),
    )


def _utf8(value):
    """str -> bytes, lone surrogates kept (TensorFlow cannot build a string tensor from them)."""
    return value.encode("utf-8", "surrogatepass")


def _string_tensor(array):
    """A NumPy str/bytes array as a tf.string tensor."""
    return tf.constant(np.char.encode(array, "utf-8", "surrogatepass") if array.dtype.kind == "U" else array)


def not_text():
    """Values that are not text: numbers, None, containers of non-text, rank > 1, numeric or ragged tensors."""
    numeric = hnp.arrays(
        dtype=st.sampled_from([np.int32, np.int64, np.float32, np.float64, np.bool_, np.uint8]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
    )
    strings_2d = hnp.arrays(dtype=st.sampled_from(["U4", "S4"]), shape=hnp.array_shapes(min_dims=2, max_dims=3))
    mixed = st.lists(st.one_of(st.text(max_size=3), st.integers(), st.none(), st.floats()), min_size=1).filter(
        lambda values: not all(isinstance(value, (str, bytes)) for value in values))
    return st.one_of(
        st.integers(), st.floats(), st.none(), st.booleans(), st.complex_numbers(),
        mixed,
        st.lists(st.lists(st.text(max_size=3), max_size=3), min_size=1),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        numeric,
        numeric.map(tf.constant),
        strings_2d,
        strings_2d.map(_string_tensor),
        st.lists(st.lists(st.text(max_size=3), max_size=3), min_size=1).map(
            lambda rows: tf.ragged.constant([[_utf8(value) for value in row] for row in rows], dtype=tf.string)),
    )


# --- helpers ------------------------------------------------------------------------------------------------------

def _canonical(values):
    """The valid UTF-8 bytes the tokenizer must see for a list of str/bytes: invalid sequences -> U+FFFD."""
    out = []
    for value in values:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        out.append(raw.decode("utf-8", "replace").encode("utf-8"))
    return out


def _graph(tokenizer, sequence_length):
    """`strings -> (tokenize(strings), encode(strings, sequence_length))` as one traced function, cached per test."""
    key = (id(tokenizer), sequence_length)
    if key not in _GRAPHS:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def run(strings):
            return tokenizer.tokenize(strings), tokenizer.encode(strings, sequence_length=sequence_length)

        _GRAPHS[key] = run
    return _GRAPHS[key]


def _framing(name, tokenizer):
    prefix_kinds, suffix_kinds = FRAMING[name]
    ids = tokenizer.special_token_ids
    return [ids[kind] for kind in prefix_kinds], [ids[kind] for kind in suffix_kinds]


def _sequence_length(name, offset):
    """A `sequence_length` `offset` tokens above the number of special tokens (the smallest allowed is offset 1)."""
    return sum(len(kinds) for kinds in FRAMING[name]) + offset


def check_tokens_in_range(tokenizer, rows):
    """Every id of the nested lists `rows` is in [0, vocabulary_size)."""
    flat = [token for row in rows for token in row]
    assert all(0 <= token < tokenizer.vocabulary_size for token in flat), flat


def check_packing(name, tokenizer, tokens, encoded, sequence_length):
    """`encode`'s rows are `tokenize`'s cut at the end, framed by the special tokens and padded at the end."""
    prefix, suffix = _framing(name, tokenizer)
    budget = sequence_length - len(prefix) - len(suffix)
    ids, mask = encoded["token_ids"].numpy(), encoded["padding_mask"].numpy()
    assert ids.dtype == np.int32 and mask.dtype == np.bool_
    assert ids.shape == mask.shape == (len(tokens), sequence_length)
    assert ((ids >= 0) & (ids < tokenizer.vocabulary_size)).all()
    check_tokens_in_range(tokenizer, tokens)
    for row, row_tokens in enumerate(tokens):
        expected = [*prefix, *row_tokens[:budget], *suffix]
        padding = sequence_length - len(expected)
        assert ids[row].tolist() == expected + [tokenizer.pad_id] * padding
        assert mask[row].tolist() == [True] * len(expected) + [False] * padding


def _run_graph(name, tokenizer, strings, offset):
    """Tokenizes and encodes `strings` ((b,) tf.string) in a graph; checks the packing; returns (tokens, ids)."""
    sequence_length = _sequence_length(name, offset)
    tokens, encoded = _graph(tokenizer, sequence_length)(strings)
    tokens = tokens.to_list()
    check_packing(name, tokenizer, tokens, encoded, sequence_length)
    return tokens, encoded["token_ids"].numpy()


# --- properties ---------------------------------------------------------------------------------------------------

@GRAPH_PATH
@PROPERTY
@given(texts=st.lists(unicode_text(), max_size=6), offset=st.sampled_from([1, 6, 38]))
def test_any_unicode_batch_encodes_in_range_at_the_configured_length(config, texts, offset):
    name, tokenizer = config
    data = [text.encode("utf-8") for text in texts]
    # One call on the batch followed by its reverse: a row does not depend on its neighbours or its position.
    tokens, ids = _run_graph(name, tokenizer, tf.constant(data + data[::-1], tf.string, shape=[2 * len(data)]), offset)
    assert tokens[len(data):] == tokens[: len(data)][::-1]
    np.testing.assert_array_equal(ids[len(data):], ids[: len(data)][::-1])


@GRAPH_PATH
@PROPERTY
@given(data=st.lists(utf8_bytes(), max_size=6), offset=st.sampled_from([1, 6, 38]))
def test_any_bytes_are_encoded_as_their_replacement_decoded_text(config, data, offset):
    name, tokenizer = config
    # One call on the raw bytes followed by Python's replacement decoding of them (U+FFFD per invalid sequence).
    strings = tf.constant(data + _canonical(data), tf.string, shape=[2 * len(data)])
    tokens, ids = _run_graph(name, tokenizer, strings, offset)
    assert tokens[: len(data)] == tokens[len(data):]
    np.testing.assert_array_equal(ids[: len(data)], ids[len(data):])


# Eager ragged ops cost 10-50 ms per call: 7-9 s per 100 examples of WordPiece and BPE (2 s for T5) on 2 vCPUs.
@pytest.mark.parametrize("config", ["bert_uncased", "gpt2_framed", "t5"], indirect=True)
@EAGER
@given(value=python_text(), offset=st.sampled_from([1, 6]))
def test_eager_api_takes_every_text_form_and_agrees_with_the_graph(config, value, offset):
    name, tokenizer = config
    kind, value = value
    sequence_length = _sequence_length(name, offset)
    eager = tokenizer.encode(value, sequence_length=sequence_length)
    if kind == "numpy":
        values = value.tolist()  # NumPy drops trailing NULs: compare with what the array holds
    elif kind == "tensor":
        values = value.numpy().tolist()
    else:
        values = [value] if kind == "scalar" else list(value)
    strings = tf.constant(_canonical(values), tf.string, shape=[len(values)])
    tokens, ids = _run_graph(name, tokenizer, strings, offset)
    np.testing.assert_array_equal(eager["token_ids"].numpy(), ids)
    check_packing(name, tokenizer, tokens, eager, sequence_length)
    if kind == "scalar":
        single = tokenizer.tokenize(value)
        assert isinstance(single, tf.Tensor) and single.shape.rank == 1 and single.numpy().tolist() == tokens[0]


@PROPERTY
@given(value=not_text())
def test_anything_but_text_raises_type_error(config, value):
    _, tokenizer = config
    with pytest.raises(TypeError, match="tokenizers take"):
        tokenizer.tokenize(value)
    with pytest.raises(TypeError, match="tokenizers take"):
        tokenizer.encode(value, sequence_length=16)


@PROPERTY
@given(sequence_length=st.one_of(
    st.integers(max_value=2), st.floats(), st.none(), st.text(max_size=2), st.just(np.float32(8)),
))
def test_sequence_length_without_room_for_a_token_raises_value_error(config, sequence_length):
    name, tokenizer = config
    specials = _sequence_length(name, 0)
    if isinstance(sequence_length, int) and sequence_length > specials:
        return  # a valid length (only possible for T5: one special token)
    with pytest.raises(ValueError, match="sequence_length must be an integer larger than"):
        tokenizer.encode(["some text"], sequence_length=sequence_length)


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(["ragged", "single", "dense"]))
def test_detokenize_takes_any_ids_in_the_vocabulary(config, data, kind):
    _, tokenizer = config
    token = st.integers(0, tokenizer.vocabulary_size - 1)
    if kind == "ragged":
        ids = data.draw(st.lists(st.lists(token, max_size=24), max_size=6))
        expected_shape = (len(ids),) if ids else ()  # [] is a sequence of no ids, like np.array([]) of shape (0,)
    elif kind == "single":
        ids = data.draw(st.lists(token, max_size=24))
        expected_shape = ()
    else:
        ids = data.draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=8),
                                   elements=token))
        expected_shape = (ids.shape[0],)
    text = tokenizer.detokenize(ids)
    assert text.dtype == tf.string and tuple(text.shape) == expected_shape


@GRAPH_PATH
@PROPERTY
@given(texts=st.lists(st.one_of(unicode_text(), utf8_bytes()), max_size=6))
def test_byte_level_bpe_round_trips_any_text(gpt2, texts):
    """GPT-2's byte-level BPE is lossless: detokenize(tokenize(text)) is the text (after U+FFFD replacement and
    the documented NUL removal)."""
    strings = _canonical(texts)
    tokens = gpt2.tokenize(tf.constant(strings, tf.string, shape=[len(strings)]))
    expected = [text.replace(b"\x00", b"") for text in strings]
    assert gpt2.detokenize(tokens).numpy().tolist() == expected


@GRAPH_PATH
@HUGE
@given(chunk=unicode_text(max_size=12).filter(bool), separator=st.sampled_from(["", " ", "\n"]))
def test_hundred_thousand_character_texts_encode_in_range(config, chunk, separator):
    name, tokenizer = config
    text = ((chunk + separator) * (HUGE_LENGTH // len(chunk + separator) + 1))[:HUGE_LENGTH]
    strings = tf.constant([text.encode("utf-8"), b"short"])
    _run_graph(name, tokenizer, strings, 62)


@GRAPH_PATH
def test_bpe_tokenizes_one_long_word_in_bounded_time(gpt2):
    """keras-hub's BPE does one merge per tf.while_loop step over the whole word (O(n^2): "a" * 8,000 took 21 s,
    * 100,000 did not finish in 10 minutes); kzoo merges pieces of MAX_WORD_BYTES bytes, so the cost is linear."""
    gpt2.tokenize(["warm up"])
    started = time.perf_counter()
    tokens = gpt2.tokenize(["a" * 6000])
    elapsed = time.perf_counter() - started
    assert tokens.shape[0] == 1 and elapsed < 1.0, f"{elapsed:.1f} s for one 6,000-letter word"
    started = time.perf_counter()
    word = "a" * 100_000
    tokens = gpt2.tokenize([word])
    elapsed = time.perf_counter() - started
    assert gpt2.detokenize(tokens).numpy().tolist() == [word.encode()]
    assert elapsed < 30.0, f"{elapsed:.1f} s for one 100,000-letter word"
