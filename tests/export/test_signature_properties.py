"""Property-based tests (hypothesis) of the exported signatures: malformed requests fail cleanly, the model lives on.

One tiny classifier (WordPiece tokenizer, `sequence_length=24`, 64 positions) is exported and loaded with
`tf.saved_model.load` once for the module. Hypothesis sends `serving_default`, `classify` and `classify_pair`
requests with random ranks (0-4), shapes (zero sizes included), dtypes, out-of-range ids and segment ids,
partner inputs of another shape, missing and unexpected inputs, and arbitrary Unicode / invalid UTF-8 text.

An oracle computed from the request itself says what must happen (the policy of `kzoo/export/serving.py`):

* a valid request succeeds: outputs have its batch size, probabilities are finite and sum to 1;
* a missing or unexpected input raises TypeError (binding the call) naming it;
* a wrong dtype raises InvalidArgumentError ("expected to be a int32/string tensor");
* a wrong rank, an empty batch or row, a row longer than the positions, an id outside the vocabulary, a segment id
  out of range or a partner input of another shape raises InvalidArgumentError naming an offending input.

Nothing else may be raised, and after every example known-good tensor and text requests still return exactly
their first answers (the process is alive and its state unchanged). 300 examples per property (the profile's).
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kzoo.export import savedmodel
from kzoo.export.serving import ServingSettings
from tests.export import savedmodel_fixtures as fixtures

pytestmark = [pytest.mark.backend("tensorflow", reason="the signatures are SavedModel functions, which need "
                                                   "TensorFlow"), pytest.mark.slow]  # 300 examples per property

PROPERTY = settings()  # the profile of tests/conftest.py: 300 examples in CI, no deadline
SEQUENCE_LENGTH = 24
TENSOR_INPUTS = ("token_ids", "segment_ids", "padding_mask")
OTHER_DTYPES = [np.int64, np.int16, np.int8, np.uint8, np.float16, np.float32, np.float64, np.bool_, object]
GOOD_TENSORS = {
    "token_ids": np.array([[2, 5, 9, 3], [2, 7, 3, 0]], np.int32),
    "segment_ids": np.zeros((2, 4), np.int32),
    "padding_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32),
}
GOOD_TEXTS = np.array([b"the quick brown fox jumps over the lazy dog", b""], dtype=object)


@dataclasses.dataclass
class Served:
    """The loaded export, its limits, and the first answers to the known-good requests."""

    loaded: object
    vocabulary: int
    positions: int
    segments: int
    good_tensor: dict
    good_text: dict


def _numpy(outputs):
    return {name: value.numpy() for name, value in outputs.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("signature_properties")
    tokenizer, files = fixtures.tokenizers(root)["wordpiece"]
    model = fixtures.build("classifier", tokenizer.vocabulary_size)
    result = savedmodel.export_savedmodel(
        model, root / "exports", tokenizer=tokenizer, labels=fixtures.CLASSES, model_name="classifier",
        settings=ServingSettings(sequence_length=SEQUENCE_LENGTH), tokenizer_files=files, warmup=False,
    )
    loaded = tf.saved_model.load(result.path)
    config = model.backbone.get_config()
    return Served(
        loaded=loaded,
        vocabulary=int(config["vocabulary_size"]),
        positions=int(config["max_sequence_length"]),
        segments=int(config.get("num_segments", 2)),
        good_tensor=_numpy(loaded.signatures["serving_default"](**_tensors(GOOD_TENSORS))),
        good_text=_numpy(loaded.signatures["classify"](text=tf.constant(GOOD_TEXTS))),
    )


def _tensors(arrays):
    return {name: tf.constant(array) for name, array in arrays.items()}


# --- strategies ---------------------------------------------------------------------------------------------------

ANY_SHAPE = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
TEXT = st.one_of(
    st.text(max_size=30).map(lambda text: text.encode("utf-8")),
    st.binary(max_size=30),  # mostly invalid UTF-8
    st.integers(30, 400).map(lambda words: b"running unbelievable tokenization " * words),  # over-long: truncated
)


def _with_dtype(draw, array):
    """`array` (int32) as another dtype; object means strings."""
    dtype = draw(st.sampled_from(OTHER_DTYPES))
    if dtype is object:
        return np.vectorize(lambda value: str(value).encode(), otypes=[object])(array) if array.size else np.full(
            array.shape, b"", dtype=object)
    return array.astype(dtype)


def _out_of_range(draw, array, low, high):
    """`array` with one random entry moved outside [low, high) (unchanged if it is empty)."""
    if array.size == 0:
        return array
    array = array.copy()
    index = draw(st.integers(0, array.size - 1))
    array.flat[index] = draw(st.one_of(
        st.sampled_from([high, low - 1]), st.integers(-(2**31), low - 1), st.integers(high, 2**31 - 1)))
    return array


@st.composite
def tensor_requests(draw, served):
    """A `serving_default` request: a (batch, length) base shape, each input possibly mutated."""
    # Hypothesis favours the first choice of sampled_from and small integers: valid sizes and "none" come first.
    positions = served.positions
    lengths = {"short": st.integers(1, 12), "limit": st.just(positions),
               "over": st.integers(positions + 1, positions + 6), "zero": st.just(0)}
    shape = (draw(st.sampled_from([1, 2, 3, 4, 0])), draw(lengths[draw(st.sampled_from(
        ["short"] * 4 + ["limit", "over", "zero"]))]))
    # Masks hold 0 (padding) or 1 (real token); the "values" mutation draws others, which must be refused.
    ranges = {"token_ids": (0, served.vocabulary), "segment_ids": (0, served.segments), "padding_mask": (0, 2)}
    request = {}
    for name in TENSOR_INPUTS:
        low, high = ranges[name]
        mutation = draw(st.sampled_from(["none"] * 6 + ["dtype", "shape", "values", "missing"]))
        if mutation == "missing":
            continue
        own_shape = draw(ANY_SHAPE) if mutation == "shape" else shape
        array = draw(hnp.arrays(np.int32, own_shape, elements=st.integers(low, high - 1)))
        if mutation == "dtype":
            array = _with_dtype(draw, array)
        elif mutation == "values":
            array = _out_of_range(draw, array, low, high)
        request[name] = array
    if draw(st.sampled_from([False] * 19 + [True])):
        request["unexpected_input"] = np.zeros((1, 1), np.int32)
    return _tensors(request)


@st.composite
def text_inputs(draw, batch):
    """One text input: mostly a (batch,) string vector, else any rank/shape, sometimes not strings."""
    mutation = draw(st.sampled_from(["none"] * 5 + ["shape", "dtype"]))
    shape = draw(ANY_SHAPE) if mutation == "shape" else (batch,)
    if mutation == "dtype":
        return tf.constant(draw(hnp.arrays(draw(st.sampled_from([np.int32, *OTHER_DTYPES[:-1]])), shape)))
    array = draw(hnp.arrays(object, shape, elements=TEXT))
    return tf.constant(array.tolist(), tf.string, shape=array.shape)


@st.composite
def text_requests(draw, names):
    """A request for a text signature with inputs `names` (one batch size unless a shape is mutated); sometimes
    one input is missing or an unexpected one is added."""
    batch = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 0]))
    request = {name: draw(text_inputs(batch)) for name in names}
    change = draw(st.sampled_from(["none"] * 18 + ["missing", "unexpected"]))
    if change == "missing":
        del request[draw(st.sampled_from(names))]
    elif change == "unexpected":
        request["unexpected_input"] = tf.constant([b"x"])
    return request


# --- the oracle ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Verdict:
    """What a request must do: succeed (error None), or raise `error` whose message holds one of `names`."""

    error: type | None = None
    names: tuple = ()


def _binding(request, expected):
    """TypeError naming the missing/unexpected inputs, or None when the request has exactly `expected`."""
    wrong = sorted(set(request) ^ set(expected))
    return Verdict(TypeError, tuple(wrong)) if wrong else None


def tensor_verdict(request, served):
    """The oracle for `serving_default` (the checks of `serving.checked_tensor_inputs`)."""
    binding = _binding(request, TENSOR_INPUTS)
    if binding:
        return binding
    if any(tensor.dtype != tf.int32 for tensor in request.values()):
        return Verdict(tf.errors.InvalidArgumentError, ("expected to be a int32 tensor",))
    arrays = {name: tensor.numpy() for name, tensor in request.items()}
    problems = {name for name, array in arrays.items() if array.ndim != 2}
    ids = arrays["token_ids"]
    if "token_ids" not in problems:
        batch, length = ids.shape
        in_vocabulary = ((ids >= 0) & (ids < served.vocabulary)).all()
        if batch == 0 or length == 0 or length > served.positions or not in_vocabulary:
            problems.add("token_ids")
        problems |= {name for name in ("segment_ids", "padding_mask")
                     if arrays[name].ndim == 2 and arrays[name].shape != ids.shape}
    segments = arrays["segment_ids"]
    if segments.ndim == 2 and not ((segments >= 0) & (segments < served.segments)).all():
        problems.add("segment_ids")
    mask = arrays["padding_mask"]
    if mask.ndim == 2 and not ((mask == 0) | (mask == 1)).all():
        problems.add("padding_mask")
    return Verdict(tf.errors.InvalidArgumentError, tuple(problems)) if problems else Verdict()


def text_verdict(request, names):
    """The oracle for `classify` / `classify_pair` (`text_ops.check_batch` / `check_pair`)."""
    binding = _binding(request, names)
    if binding:
        return binding
    if any(tensor.dtype != tf.string for tensor in request.values()):
        return Verdict(tf.errors.InvalidArgumentError, ("expected to be a string tensor",))
    problems = {name for name, tensor in request.items() if tensor.shape.rank != 1}
    if names[0] not in problems and request[names[0]].shape[0] == 0:
        problems.add(names[0])
    if not problems and len({tensor.shape[0] for tensor in request.values()}) > 1:
        problems.add(names[0])  # "text and text_pair must hold the same number of strings"
    return Verdict(tf.errors.InvalidArgumentError, tuple(problems)) if problems else Verdict()


# --- checks -------------------------------------------------------------------------------------------------------

def call(served, signature, request, verdict):
    """Calls `signature` with `request`; checks the outcome against `verdict`; returns the outputs or None."""
    event("valid" if verdict.error is None else f"{verdict.error.__name__}: {', '.join(sorted(verdict.names))}")
    try:
        outputs = served.loaded.signatures[signature](**request)
    except (tf.errors.InvalidArgumentError, TypeError) as error:
        message = getattr(error, "message", None) or str(error)
        assert verdict.error is not None, f"a valid request failed: {type(error).__name__}: {message[:300]}"
        assert isinstance(error, verdict.error), f"expected {verdict.error.__name__}, got {type(error).__name__}"
        assert any(name in message for name in verdict.names), f"{message[:300]!r} names none of {verdict.names}"
        return None
    assert verdict.error is None, f"accepted a request that must raise {verdict.error.__name__} ({verdict.names})"
    return _numpy(outputs)


def check_probabilities(outputs, batch):
    """(batch, classes) float32 probabilities: finite, summing to 1 per row."""
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (batch, len(fixtures.CLASSES)) and probabilities.dtype == np.float32
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


def check_labels(outputs, batch):
    """The classify outputs of a batch: probabilities, and label_id/label/score naming a most probable class."""
    check_probabilities(outputs, batch)
    probabilities = outputs["probabilities"]
    assert outputs["label_id"].shape == (batch,) and outputs["label_id"].dtype == np.int32
    assert ((outputs["label_id"] >= 0) & (outputs["label_id"] < len(fixtures.CLASSES))).all()
    np.testing.assert_array_equal(outputs["score"], probabilities.max(axis=-1))
    np.testing.assert_array_equal(np.take_along_axis(probabilities, outputs["label_id"][:, None], 1)[:, 0],
                                  outputs["score"])  # the label is a most probable class
    assert [label.decode() for label in outputs["label"].tolist()] == [
        fixtures.CLASSES[i] for i in outputs["label_id"]]


def check_still_serving(served):
    """The known-good requests give exactly their first answers."""
    tensor = _numpy(served.loaded.signatures["serving_default"](**_tensors(GOOD_TENSORS)))
    text = _numpy(served.loaded.signatures["classify"](text=tf.constant(GOOD_TEXTS)))
    for expected, actual in ((served.good_tensor, tensor), (served.good_text, text)):
        assert expected.keys() == actual.keys()
        for name in expected:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


# --- properties ---------------------------------------------------------------------------------------------------

@PROPERTY
@given(data=st.data())
def test_serving_default_accepts_exactly_the_valid_tensor_requests(served, data):
    request = data.draw(tensor_requests(served), label="request")
    outputs = call(served, "serving_default", request, tensor_verdict(request, served))
    if outputs is not None:
        batch = request["token_ids"].shape[0]
        assert outputs["logits"].shape == (batch, len(fixtures.CLASSES)) and np.isfinite(outputs["logits"]).all()
        check_probabilities(outputs, batch)
    check_still_serving(served)


@PROPERTY
@given(request=text_requests(("text",)))
def test_classify_accepts_exactly_the_valid_text_requests(served, request):
    outputs = call(served, "classify", request, text_verdict(request, ("text",)))
    if outputs is not None:
        batch = request["text"].shape[0]
        check_labels(outputs, batch)
        # A row's answer does not depend on its neighbours: the reversed batch gives the reversed answers.
        reversed_outputs = _numpy(served.loaded.signatures["classify"](text=request["text"][::-1]))
        np.testing.assert_allclose(reversed_outputs["probabilities"], outputs["probabilities"][::-1], atol=1e-6)
    check_still_serving(served)


@PROPERTY
@given(request=text_requests(("text", "text_pair")))
def test_classify_pair_accepts_exactly_the_valid_text_pairs(served, request):
    outputs = call(served, "classify_pair", request, text_verdict(request, ("text", "text_pair")))
    if outputs is not None:
        check_labels(outputs, request["text"].shape[0])
    check_still_serving(served)
