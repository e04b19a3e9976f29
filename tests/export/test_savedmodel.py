"""SavedModel export: TF Serving layout, signatures, fresh-process parity, TF Hub loading, serving-edge errors.

One export per model kind per session (module fixtures): exporting traces every signature, a few seconds each.
"""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from kzoo.export import savedmodel, verify
from kzoo.export.errors import ExportError
from kzoo.export.serving import ServingSettings
from kzoo.metrics.squad import best_span
from kzoo.metrics.token_classification import bio_entities
from tests.export import savedmodel_fixtures as fixtures

pytestmark = pytest.mark.backend("tensorflow", reason="a SavedModel is a TensorFlow graph: export needs the "
                                                      "TensorFlow backend")

SEQUENCE_LENGTH = 24
SETTINGS = ServingSettings(sequence_length=SEQUENCE_LENGTH, max_new_tokens=8)
TEXTS = ["the quick brown fox jumps over the lazy dog", "tokenizer", "padding mask running runner " * 12, ""]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return fixtures.tokenizers(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory, vocab):
    """kind -> (model, tokenizer, files, labels, ExportResult); built on first use."""
    root = tmp_path_factory.mktemp("exports")
    cache = {}

    def get(kind):
        if kind not in cache:
            tokenizer, files = vocab["sentencepiece" if kind in ("gpt", "t5") else "wordpiece"]
            with_tokenizer = not kind.startswith("pretrainer")
            model = fixtures.build(kind, tokenizer.vocabulary_size)
            labels = {"classifier": fixtures.CLASSES, "tagger": fixtures.TAGS}.get(kind)
            result = savedmodel.export_savedmodel(
                model, root, tokenizer=tokenizer if with_tokenizer else None, labels=labels, model_name=kind,
                settings=SETTINGS, tokenizer_files=files if with_tokenizer else None,
            )
            cache[kind] = (model, tokenizer if with_tokenizer else None, files, labels, result)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def loaded(exports):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = tf.saved_model.load(exports(kind)[-1].path)
        return cache[kind]

    return get


def _call(loaded_model, signature, **inputs):
    function = loaded_model.signatures[signature]
    return {name: value.numpy() for name, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _strings(array):
    return [value.decode("utf-8") for value in np.ravel(array).tolist()]


# --- layout and metadata -------------------------------------------------------------------------------------------

def test_tf_serving_layout_assets_metadata_and_warmup(exports):
    model, tokenizer, files, labels, result = exports("classifier")
    assert os.path.basename(result.path) == "1" and os.path.basename(os.path.dirname(result.path)) == "classifier"
    for name in ("saved_model.pb", "variables", "assets/vocab.txt", "assets.extra/kzoo_export.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(result.path, name)), name
    assert not [name for name in os.listdir(os.path.dirname(result.path)) if name.startswith(".")]  # no staging
    metadata = json.load(open(os.path.join(result.path, "assets.extra", "kzoo_export.json")))
    assert metadata["model_class"] == "BertClassifier" and metadata["labels"] == fixtures.CLASSES
    assert set(metadata["signatures"]) == {"serving_default", "classify", "classify_pair"}
    assert metadata["signatures"]["classify"]["inputs"] == {"text": {"dtype": "string", "shape": [-1]}}
    assert metadata["signatures"]["serving_default"]["inputs"]["token_ids"] == {"dtype": "int32", "shape": [-1, -1]}
    assert "truncated to 24 sub-tokens" in metadata["signatures"]["classify"]["doc"]
    warmup = savedmodel.read_warmup_requests(os.path.join(result.path, "assets.extra", "tf_serving_warmup_requests"))
    assert [name for name, _ in warmup] == ["serving_default", "classify", "classify_pair"]


def test_versions_count_up_and_an_existing_version_is_not_overwritten(tmp_path, vocab):
    tokenizer, files = vocab["wordpiece"]
    model = fixtures.build("encoder", tokenizer.vocabulary_size)
    first = savedmodel.export_savedmodel(model, tmp_path, model_name="m", warmup=False)
    second = savedmodel.export_savedmodel(model, tmp_path, model_name="m", warmup=False)
    assert (first.version, second.version) == (1, 2)
    with pytest.raises(ExportError, match="already exists.*next free one \\(3\\)"):
        savedmodel.export_savedmodel(model, tmp_path, model_name="m", version=1)
    again = savedmodel.export_savedmodel(model, tmp_path, model_name="m", version=1, overwrite=True, warmup=False)
    assert again.version == 1 and sorted(os.listdir(tmp_path / "m")) == ["1", "2"]


def test_export_refuses_bad_requests_with_clear_errors(tmp_path, vocab):
    tokenizer, _ = vocab["wordpiece"]
    classifier = fixtures.build("classifier", tokenizer.vocabulary_size)
    with pytest.raises(ExportError, match="2 labels given for a model with 3 classes"):
        savedmodel.export_savedmodel(classifier, tmp_path, tokenizer=tokenizer, labels=["a", "b"])
    with pytest.raises(ExportError, match="takes a kzoo model"):
        savedmodel.export_savedmodel(tf.keras.Sequential(), tmp_path)
    small = fixtures.build("classifier", 20)
    with pytest.raises(ExportError, match="tokenizer has 300 ids but the model's vocabulary has 20"):
        savedmodel.export_savedmodel(small, tmp_path, tokenizer=tokenizer)
    with pytest.raises(ExportError, match="version must be a positive integer"):
        savedmodel.export_savedmodel(classifier, tmp_path, version=0)
    gpt = fixtures.build("gpt", tokenizer.vocabulary_size)  # 48 learned positions
    with pytest.raises(ExportError, match="leaves no room for a prompt"):
        savedmodel.export_savedmodel(gpt, tmp_path, tokenizer=tokenizer, settings=ServingSettings(max_new_tokens=48))
    # generate's fixed options are checked at export, not refused on every request (or, for an id, looked up
    # silently out of range on a GPU).
    for settings, message in [
        (ServingSettings(temperature=-0.5), "temperature must be a number >= 0"),
        (ServingSettings(temperature=float("nan")), "temperature must be a number >= 0"),
        (ServingSettings(top_p=1.5), "top_p must be in \\(0, 1\\]"),
        (ServingSettings(decoder_start_id=-1), "decoder_start_id must hold ids in \\[0, 299\\]"),
        (ServingSettings(stop_token_ids=(5, 300)), "stop_token_ids must hold ids in \\[0, 299\\]"),
    ]:
        with pytest.raises(ExportError, match=message):
            savedmodel.export_savedmodel(gpt, tmp_path, tokenizer=tokenizer, settings=settings)
    assert not os.path.exists(tmp_path / "gptcausallm" / "1")


def test_sequence_length_above_the_positions_is_lowered_with_a_warning():
    from kzoo.export.errors import ExportWarning

    classifier = fixtures.build("classifier", 300)  # 64 positions
    with pytest.warns(ExportWarning, match="sequence_length=100 is above the model's 64 positions"):
        assert savedmodel.resolve_settings(classifier, None, ServingSettings(sequence_length=100)).sequence_length == 64
    gpt = fixtures.build("gpt", 300)  # 48 positions
    with pytest.warns(ExportWarning, match="prompts keep their last 40 tokens"):
        from kzoo.export.generation import prompt_budget

        assert prompt_budget(gpt, ServingSettings(sequence_length=100, max_new_tokens=8)) == 40


# --- parity in a process without Keras or kzoo ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "tagger", "qa", "encoder", "encoder_no_pooler", "pretrainer",
                                  "pretrainer_mlm", "gpt", "t5"])
def test_fresh_tensorflow_process_reproduces_keras(exports, kind):
    model, tokenizer, files, labels, result = exports(kind)
    rows = verify.verify_savedmodel(model, result.path, tokenizer=tokenizer, labels=labels, settings=SETTINGS)
    floats = [row for row in rows if row.output in ("logits", "start_logits", "sequence_output", "mlm_logits")]
    assert floats and all(row.max_rel <= 1e-5 for row in floats), verify.format_rows(rows)
    requests = {row.request.split("#")[0] for row in rows}
    assert requests == set(result.signatures)  # every signature was exercised


def test_warmup_requests_are_valid_requests_for_a_tensorflow_only_process(exports):
    result = exports("gpt")[-1]
    warmup = savedmodel.read_warmup_requests(os.path.join(result.path, "assets.extra", "tf_serving_warmup_requests"))
    requests = {f"{name}#{index}": inputs for index, (name, inputs) in enumerate(warmup)}
    outputs = verify.run_fresh(result.path, requests)
    assert set(outputs) == set(requests)
    assert all("error" not in values for values in outputs.values())


# --- what the text signatures compute -----------------------------------------------------------------------------

def test_classify_equals_the_keras_model_on_tokenizer_encode(exports, loaded):
    model, tokenizer, *_ = exports("classifier")
    outputs = _call(loaded("classifier"), "classify", text=TEXTS)
    packed = tokenizer.encode(TEXTS, sequence_length=SEQUENCE_LENGTH)
    inputs = {"token_ids": packed["token_ids"], "segment_ids": tf.zeros_like(packed["token_ids"]),
              "padding_mask": tf.cast(packed["padding_mask"], tf.int32)}
    probabilities = tf.nn.softmax(model(inputs)).numpy()
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6)
    assert _strings(outputs["label"]) == [fixtures.CLASSES[i] for i in probabilities.argmax(-1)]
    pair = _call(loaded("classifier"), "classify_pair", text=TEXTS[:2], text_pair=TEXTS[2:])
    packed = tokenizer.encode_pair(TEXTS[:2], TEXTS[2:], sequence_length=SEQUENCE_LENGTH)
    packed["padding_mask"] = tf.cast(packed["padding_mask"], tf.int32)
    np.testing.assert_allclose(pair["probabilities"], tf.nn.softmax(model(packed)).numpy(), atol=1e-6)


def test_tag_gives_first_subword_tags_and_conlleval_entities(exports, loaded):
    model, tokenizer, *_ = exports("tagger")
    texts = ["the quick brown fox jumps over the lazy dog", "tokenization vocabularies", "padding " * 30]
    outputs = _call(loaded("tagger"), "tag", text=texts)
    for row, sentence in enumerate(texts):
        words = sentence.split()
        pieces = [tokenizer.tokenize(word).numpy().tolist() for word in words]
        ids = [tokenizer.special_token_ids["cls"]] + [p for word in pieces for p in word][: SEQUENCE_LENGTH - 2]
        ids += [tokenizer.special_token_ids["sep"]]
        length = len(ids)
        ids = np.array([ids + [0] * (SEQUENCE_LENGTH - length)], np.int32)
        mask = (np.arange(SEQUENCE_LENGTH) < length).astype(np.int32)[None]
        logits = model({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}).numpy()[0]
        expected, position = [], 1
        for word_pieces in pieces:
            expected.append(fixtures.TAGS[logits[position].argmax()] if position < SEQUENCE_LENGTH - 1 else "O")
            position += len(word_pieces)
        tags = _strings(outputs["tags"][row])[: len(words)]
        assert tags == expected
        assert _strings(outputs["words"][row])[: len(words)] == words
        entities = bio_entities(expected)
        count = int(outputs["num_entities"][row])
        assert count == len(entities)
        got = list(zip(_strings(outputs["entity_types"][row])[:count], outputs["entity_starts"][row][:count],
                       outputs["entity_ends"][row][:count] - 1, strict=True))
        assert got == [(kind, start, end) for kind, start, end in entities]
        texts_out = _strings(outputs["entity_texts"][row])[:count]
        assert texts_out == [" ".join(words[start:end + 1]) for _, start, end in entities]
    assert int(outputs["num_entities"][1]) >= 0 and _strings(outputs["tags"][2])[-1] == "O"  # past the cut


def test_answer_is_the_best_context_span_in_whole_words(exports, loaded):
    model, tokenizer, *_ = exports("qa")
    question, context = "where does the fox run", "the quick brown fox jumps over the lazy dog. " * 3
    outputs = _call(loaded("qa"), "answer", question=[question, "x"], context=[context, ""])
    q = tokenizer.tokenize(question).numpy().tolist()[: SEQUENCE_LENGTH // 2]  # the question keeps <= half the row
    words = context.split()
    pieces = [tokenizer.tokenize(word).numpy().tolist() for word in words]
    budget = SEQUENCE_LENGTH - 3 - len(q)  # the context is cut at the end to fit
    flat = [p for word in pieces for p in word][:budget]
    owner = [index for index, word in enumerate(pieces) for _ in word][:budget]
    cls, sep = tokenizer.special_token_ids["cls"], tokenizer.special_token_ids["sep"]
    ids = [cls, *q, sep, *flat, sep]
    segments = [0] * (len(q) + 2) + [1] * (len(flat) + 1)
    pad = SEQUENCE_LENGTH - len(ids)
    inputs = {"token_ids": np.array([ids + [0] * pad], np.int32), "segment_ids": np.array([segments + [0] * pad]),
              "padding_mask": np.array([[1] * len(ids) + [0] * pad])}
    logits = model(inputs)
    valid = np.zeros(SEQUENCE_LENGTH, bool)
    valid[len(q) + 2: len(q) + 2 + len(flat)] = True
    start, end = best_span(logits["start_logits"].numpy()[0], logits["end_logits"].numpy()[0], 30, valid)[:2]
    first, last = owner[start - len(q) - 2], owner[end - len(q) - 2]
    assert (int(outputs["answer_start"][0]), int(outputs["answer_end"][0])) == (first, last + 1)
    assert _strings(outputs["answer"])[0] == " ".join(words[first:last + 1]).strip(".")
    assert _strings(outputs["answer"])[1] == "" and int(outputs["answer_start"][1]) == -1  # no context


@pytest.mark.parametrize("kind", ["encoder", "encoder_no_pooler"])
def test_embed_is_the_masked_mean_of_the_token_vectors(exports, loaded, kind):
    model, tokenizer, *_, result = exports(kind)
    outputs = _call(loaded(kind), "embed", text=TEXTS[:2])
    packed = tokenizer.encode(TEXTS[:2], sequence_length=SEQUENCE_LENGTH)
    mask = tf.cast(packed["padding_mask"], tf.float32)
    features = model({"token_ids": packed["token_ids"], "segment_ids": tf.zeros_like(packed["token_ids"]),
                      "padding_mask": tf.cast(mask, tf.int32)})
    expected = tf.reduce_sum(features["sequence_output"] * mask[..., None], 1) / tf.reduce_sum(mask, 1)[:, None]
    np.testing.assert_allclose(outputs["embedding"], expected.numpy(), atol=1e-5)
    # pooled_output is served exactly when the backbone has a pooler, and the metadata says so.
    pooled = kind == "encoder"
    assert ("pooled_output" in outputs) == pooled
    if pooled:
        np.testing.assert_allclose(outputs["pooled_output"], features["pooled_output"].numpy(), atol=1e-5)
    metadata = json.load(open(os.path.join(result.path, "assets.extra", "kzoo_export.json")))["signatures"]
    for name in ("embed", "serving_default"):
        assert ("pooled_output" in metadata[name]["outputs"]) == pooled
        assert ("pooled_output" in metadata[name]["doc"]) == pooled, metadata[name]["doc"]


@pytest.mark.parametrize("kind", ["pretrainer", "pretrainer_mlm"])
def test_pretrainer_outputs_and_their_description_follow_its_heads(exports, loaded, kind):
    model, *_, result = exports(kind)
    inputs = verify.random_tensor_requests(model, shapes=[(2, 7)])["serving_default#0"]
    outputs = _call(loaded(kind), "serving_default", **inputs)
    expected = {name: value.numpy() for name, value in model(inputs).items()}
    assert set(outputs) == set(expected) == ({"mlm_logits", "nsp_logits"} if kind == "pretrainer" else {"mlm_logits"})
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name], value, atol=1e-5)
    served = json.load(open(os.path.join(result.path, "assets.extra", "kzoo_export.json")))["signatures"]
    assert set(served["serving_default"]["outputs"]) == set(expected)
    doc = served["serving_default"]["doc"]
    assert "mlm_logits (b, p, vocabulary)" in doc and ("nsp_logits" in doc) == (kind == "pretrainer"), doc


@pytest.mark.parametrize("kind", ["gpt", "t5"])
def test_generate_signature_equals_model_generate(exports, loaded, kind):
    model, tokenizer, *_ = exports(kind)
    prompts = ["the quick brown fox", "tokenizer", "a model learns"]
    outputs = _call(loaded(kind), "generate", prompts=prompts)
    expected = model.generate(prompts, tokenizer=tokenizer, max_new_tokens=SETTINGS.max_new_tokens)
    assert _strings(outputs["text"]) == expected
    if kind == "gpt":  # a prompt over the budget keeps its last SEQUENCE_LENGTH tokens
        long_prompt = "a model learns tokens from text and data " * 4
        ids = tokenizer.tokenize(long_prompt).numpy()[-SEQUENCE_LENGTH:]
        served = _call(loaded(kind), "generate", prompts=[long_prompt])["token_ids"][0]
        direct = model.generate(ids, max_new_tokens=SETTINGS.max_new_tokens,
                                stop_token_ids=[tokenizer.special_token_ids["eos"]])
        np.testing.assert_array_equal(served, direct)
    short = _call(loaded(kind), "generate_with_options", prompts=prompts, max_new_tokens=np.int32(3),
                  temperature=np.float32(0), top_p=np.float32(1), seed=np.int32(0))
    assert short["token_ids"].shape[1] <= 3
    np.testing.assert_array_equal(short["token_ids"], outputs["token_ids"][:, : short["token_ids"].shape[1]])


def test_sampling_is_reproducible_per_seed(exports, loaded):
    options = dict(prompts=["the quick brown fox"] * 4, max_new_tokens=np.int32(8), temperature=np.float32(1.5),
                   top_p=np.float32(0.95))
    first = _call(loaded("gpt"), "generate_with_options", seed=np.int32(1), **options)
    again = _call(loaded("gpt"), "generate_with_options", seed=np.int32(1), **options)
    other = _call(loaded("gpt"), "generate_with_options", seed=np.int32(2), **options)
    np.testing.assert_array_equal(first["token_ids"], again["token_ids"])
    assert len({tuple(row) for row in first["token_ids"]}) > 1 or not np.array_equal(
        first["token_ids"], other["token_ids"])


# --- bad input at the serving edge --------------------------------------------------------------------------------

def test_bad_requests_fail_with_a_message_and_the_model_keeps_serving(exports, loaded):
    model, tokenizer, *_ = exports("classifier")
    served = loaded("classifier")
    good = {"token_ids": np.array([[2, 5, 3]], np.int32), "segment_ids": np.zeros((1, 3), np.int32),
            "padding_mask": np.ones((1, 3), np.int32)}
    cases = [
        ("serving_default", {**good, "token_ids": np.array([[2, 5000, 3]], np.int32)}, "outside the vocabulary"),
        ("serving_default", {**good, "padding_mask": np.ones((1, 4), np.int32)}, "padding_mask must have the shape"),
        ("serving_default", {**good, "segment_ids": np.full((1, 3), 7, np.int32)}, "segment_ids must be in"),
        ("serving_default", {**good, "padding_mask": np.full((1, 3), 2, np.int32)},
         "padding_mask must hold only 0 \\(padding\\) and 1"),
        ("serving_default", {k: np.zeros((0, 3), np.int32) for k in good}, "empty batch"),
        ("serving_default", {k: np.zeros((1, 0), np.int32) for k in good}, "no tokens"),
        ("serving_default", {k: np.ones((1, 65), np.int32) for k in good}, "longer than the 64 positions of the model"),
        ("serving_default", {**good, "token_ids": good["token_ids"][0]},
         "token_ids must be 2-D|tensor token_ids \\[3\\] is not compatible"),
        ("classify", {"text": np.array([[b"nested"]])}, "text must be 1-D|tensor text \\[1,1\\] is not compatible"),
        ("classify", {"text": np.array(b"scalar")}, "text must be 1-D|tensor text \\[\\] is not compatible"),
        ("classify", {"text": np.array([], object)}, "empty batch"),
        ("classify_pair", {"text": np.array([b"a", b"b"]), "text_pair": np.array([b"c"])}, "same number"),
    ]
    for signature, inputs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            served.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    wrong_dtype = {**good, "token_ids": good["token_ids"].astype(np.float32)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32 tensor but is a float") as raised:
        served.signatures["serving_default"](**{k: tf.constant(v) for k, v in wrong_dtype.items()})
    # TensorFlow names the input by position; kzoo_export.json maps the position to the name.
    position = int(re.search(r"input #(\d+)\(zero-based\)", str(raised.value)).group(1))
    metadata = json.load(open(os.path.join(exports("classifier")[-1].path, "assets.extra", "kzoo_export.json")))
    assert metadata["signatures"]["serving_default"]["input_positions"][position] == "token_ids"
    long_text = "running " * 500  # truncated to SEQUENCE_LENGTH sub-tokens, not an error
    assert _call(served, "classify", text=[long_text, ""])["probabilities"].shape == (2, 3)
    assert _call(served, "serving_default", **good)["logits"].shape == (1, 3)  # still serving


def test_generation_options_and_empty_prompts_are_checked(exports, loaded):
    served = loaded("gpt")
    options = dict(max_new_tokens=np.int32(4), temperature=np.float32(0), top_p=np.float32(1), seed=np.int32(0))
    cases = [
        ({"prompts": ["fox", ""]}, "at least one token"),
        ({"prompts": [b"fox", b"\xff\xfe"]}, "not valid UTF-8"),
        ({"max_new_tokens": np.int32(9)}, "max_new_tokens must be in \\[1, 8\\]"),
        ({"max_new_tokens": np.int32(0)}, "max_new_tokens must be in"),
        ({"temperature": np.float32(-1)}, "temperature must be >= 0"),
        ({"top_p": np.float32(0)}, "top_p must be in"),
        ({"prompts": np.array([], object)}, "empty batch"),
        ({"max_new_tokens": np.array([4], np.int32)}, "max_new_tokens must be a scalar|max_new_tokens \\[1\\] is not"),
    ]
    for change, message in cases:
        inputs = {"prompts": ["fox"], **options, **change}
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            served.signatures["generate_with_options"](**{k: tf.constant(v) for k, v in inputs.items()})
    assert _call(served, "generate", prompts=["fox " * 200])["text"].shape == (1,)  # keeps the last tokens


# --- TF Hub / TFSMLayer --------------------------------------------------------------------------------------------

def test_encoder_loads_with_hub_keraslayer_and_tfsmlayer(exports):
    import keras
    import tensorflow_hub as hub

    model, tokenizer, *_, result = exports("encoder")
    inputs = verify.random_tensor_requests(model, shapes=[(2, 7)])["serving_default#0"]
    expected = model(inputs)
    hub_layer = hub.KerasLayer(result.path, trainable=False)
    from_hub = hub_layer(inputs)
    np.testing.assert_allclose(from_hub["sequence_output"], expected["sequence_output"], atol=1e-5)
    assert len(hub_layer.weights) == len(model.weights)
    tfsm = keras.layers.TFSMLayer(result.path, call_endpoint="serving_default")
    np.testing.assert_allclose(tfsm(inputs)["pooled_output"], expected["pooled_output"], atol=1e-5)


# --- the command line ----------------------------------------------------------------------------------------------

def test_cli_exports_a_run_directory_and_reports_bad_sources(tmp_path, vocab, capsys):
    import keras

    from kzoo import cli

    tokenizer, files = vocab["wordpiece"]
    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    fixtures.build("classifier", tokenizer.vocabulary_size).save(run / "model.keras")
    (run / "tokenizer" / "vocab.txt").write_text(open(files["vocab.txt"]).read())
    (run / "tokenizer" / "labels.json").write_text(json.dumps({"labels": fixtures.CLASSES}))
    code = cli.main(["export", str(run), "--output", str(tmp_path / "served"), "--name", "sentiment",
                     "--sequence-length", "100"])
    printed = capsys.readouterr()
    assert code == 0 and "signature classify:" in printed.out and "--model_name=sentiment" in printed.out
    # --sequence-length above the 64 positions is clamped, and said so.
    assert "kzoo export: warning: sequence_length=100 is above the model's 64 positions" in printed.err
    metadata = json.load(open(tmp_path / "served" / "sentiment" / "1" / "assets.extra" / "kzoo_export.json"))
    assert metadata["labels"] == fixtures.CLASSES and metadata["tokenizer"]["assets"] == ["vocab.txt"]
    assert cli.main(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
    assert "neither a run directory nor a .keras file" in capsys.readouterr().err
    # The flag's old name still works for one release, with a warning naming the new one.
    assert cli.main(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "x"), "--max-length", "9"]) == 2
    assert "warning: --max-length is now --sequence-length" in capsys.readouterr().err
    keras.backend.clear_session()
