"""ONNX export (tf2onnx) run with ONNX Runtime: parity with Keras for every model type,
greedy generation token for token, int8 quantization, tampering and error messages.

Conversions take seconds each, so every exported directory is built once per module
and shared. Export needs TensorFlow (tf2onnx converts TensorFlow graphs): those tests
run only under the TensorFlow backend. The concatenating past path that the decoding
graphs use is checked against the full forward pass under both backends.
"""

import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from kzoo import models
from kzoo.export import onnx as onnx_export
from kzoo.export.onnx import convert as onnx_convert
from kzoo.export.onnx import graphs as onnx_graphs
from kzoo.export.onnx_generate import OnnxGenerator
from tests.generate import helpers
from tests.harness import randomize_weights, to_numpy

TF_ONLY = pytest.mark.backend("tensorflow", reason="tf2onnx converts TensorFlow graphs: ONNX export needs the "
                                                   "TensorFlow backend")
NEW_TOKENS = 8
# The fp32 parity bar of verify_onnx (allclose: |onnx - keras| <= atol + rtol * |keras|).
RTOL, ATOL = 1e-3, 1e-4

BERT_TASKS = {
    "backbone": lambda backbone: backbone,
    "classifier": lambda backbone: models.BertClassifier(backbone, num_classes=3),
    "token_classifier": lambda backbone: models.BertTokenClassifier(backbone, num_classes=5),
    "span_qa": models.BertSpanQA,
    "pretrainer": models.BertPretrainer,
    # The models of a Hugging Face BertForMaskedLM file: no pooler, so no pooled_output and no nsp_logits.
    "backbone_no_pooler": lambda backbone: backbone,
    "pretrainer_mlm": lambda backbone: models.BertPretrainer(backbone, next_sentence_prediction=False),
}
NO_POOLER = {"backbone_no_pooler", "pretrainer_mlm"}
# The seq2seq conversions take 15-20 s each: the quick tier checks the GPTs, CI (slow tier) all four.
SLOW_GENERATIVE = {"t5", "bart"}
GENERATIVE = {
    "gpt_learned": lambda: helpers.tiny_gpt("learned", seed=0),
    "gpt_rotary": lambda: helpers.tiny_gpt("rotary", seed=0),
    "t5": lambda: helpers.tiny_seq2seq("t5", seed=0),
    "bart": lambda: helpers.tiny_seq2seq("bart", seed=2),
}


@pytest.fixture(scope="module")
def bert_exports(tmp_path_factory):
    """Every BERT model type on its own randomized `bert_test` backbone, exported once."""
    exported = {}
    for name, build in BERT_TASKS.items():
        model = build(models.from_preset("bert_test", dropout=0.0, attention_dropout=0.0,
                                         use_pooler=name not in NO_POOLER))
        randomize_weights(model, seed=1)
        directory = tmp_path_factory.mktemp(f"bert_{name}")
        onnx_export.export_onnx(model, directory)
        exported[name] = (model, directory)
    return exported


class _Exports(dict):
    """Exports each tiny generative model the first time a test asks for it."""

    def __init__(self, tmp_path_factory):
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, name):
        model = GENERATIVE[name]()
        directory = self.tmp_path_factory.mktemp(name)
        onnx_export.export_onnx(model, directory)
        self[name] = (model, directory)
        return self[name]


@pytest.fixture(scope="module")
def generative_exports(tmp_path_factory):
    """Tiny GPT (learned, rotary) and seq2seq (T5, BART) LMs, with their decoding graphs."""
    return _Exports(tmp_path_factory)


def _output_names(model):
    return list(model.output.keys()) if isinstance(model.output, dict) else ["logits"]


def _assert_parity(report):
    fp32 = [row for row in report if row["precision"] == "fp32"]
    assert fp32 and all(row["ok"] and row["finite"] for row in fp32)
    assert max(row["max_abs"] for row in fp32) < ATOL


# === The past path (both backends) ===


@pytest.mark.parametrize("position_embedding", ["learned", "rotary"])
def test_gpt_past_path_matches_the_forward_pass(position_embedding):
    model = helpers.tiny_gpt(position_embedding, seed=0)
    backbone = model.backbone
    ids = np.array([[5, 17, 33, 2, 9, 11]], "int32")
    full = to_numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    hidden, past = backbone.call_with_past(ids[:, :3], backbone.empty_past(1), np.ones((1, 3), "int32"))
    steps = [to_numpy(backbone.token_logits(hidden))]
    for index in range(3, 6):
        hidden, past = backbone.call_with_past(ids[:, index : index + 1], past, np.ones((1, index + 1), "int32"))
        steps.append(to_numpy(backbone.token_logits(hidden)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4, rtol=0)
    assert tuple(past[0][0].shape) == (1, 6, 2, 8)


@pytest.mark.parametrize(("design", "seed"), [("t5", 0), ("bart", 2)])
def test_seq2seq_past_path_matches_the_forward_pass(design, seed):
    model = helpers.tiny_seq2seq(design, seed=seed)
    backbone = model.backbone
    source, target = np.array([[5, 17, 33, 2]], "int32"), np.array([[0, 4, 8, 9, 1]], "int32")
    full = to_numpy(model({"encoder_token_ids": source, "encoder_padding_mask": np.ones_like(source),
                           "decoder_token_ids": target, "decoder_padding_mask": np.ones_like(target)}))
    cross = backbone.cross_attention_caches(backbone.encode(source, np.ones_like(source)))
    past, steps = backbone.empty_decoder_past(1), []
    for index in range(target.shape[1]):
        hidden, past = backbone.decode_with_past(target[:, index : index + 1], past, cross, np.ones_like(source))
        steps.append(to_numpy(backbone.token_logits(hidden)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4, rtol=0)


@pytest.mark.backend("tensorflow", reason="the exported graphs are TensorFlow functions (what tf2onnx converts)")
def test_seq2seq_decoding_graphs_give_the_task_logits_with_its_bias():
    """The decoder graphs compute the task's logits, a logits bias (Marian's `final_logits_bias`) included: the
    graphs' functions (what tf2onnx converts, and what `verify_onnx` compares ONNX Runtime against) must equal the
    model's own forward pass, or an export would drop the bias and verify against itself."""
    backbone = helpers.tiny_seq2seq("bart", seed=2).backbone
    model = models.Seq2SeqLM(backbone, logits_bias=True)
    randomize_weights(model, seed=3)
    source, target = np.array([[5, 17, 33, 2]], "int32"), np.array([[0, 4, 8, 9, 1]], "int32")
    full = to_numpy(model({"encoder_token_ids": source, "encoder_padding_mask": np.ones_like(source),
                           "decoder_token_ids": target, "decoder_padding_mask": np.ones_like(target)}))
    _, graphs = onnx_graphs.export_graphs(model, decoding=True)
    graph = {g.name: g.function for g in graphs}
    encoded = graph["encoder"]({"encoder_token_ids": source, "encoder_padding_mask": np.ones_like(source)})
    cross = {name: value for name, value in encoded.items() if name.startswith("cross_attention.")}
    decoded = graph["decoder"]({"decoder_token_ids": target, "encoder_padding_mask": np.ones_like(source), **cross})
    assert np.abs(to_numpy(model.logits_bias_layer.weights[0])).max() > 0.1
    np.testing.assert_allclose(to_numpy(decoded["logits"]), full, atol=1e-5, rtol=0)


# === Parity ===


@TF_ONLY
@pytest.mark.parametrize("task", list(BERT_TASKS))
def test_bert_models_match_keras_in_onnx_runtime(bert_exports, task):
    model, directory = bert_exports[task]
    metadata = json.loads((directory / "export.json").read_text())
    assert metadata["opset"] == onnx_export.DEFAULT_OPSET and metadata["model_class"] == type(model).__name__
    graph = metadata["graphs"]["model"]
    expected_inputs = ["token_ids", "segment_ids", "padding_mask"]
    expected_inputs += ["mask_positions"] if task.startswith("pretrainer") else []
    assert [i["name"] for i in graph["inputs"]] == expected_inputs
    assert all(i["dtype"] == "int32" and i["shape"][0] == "batch" for i in graph["inputs"])
    outputs = {o["name"] for o in graph["outputs"]}
    assert outputs == set(_output_names(model)) | {"invalid_inputs"}
    assert ("pooled_output" in outputs or "nsp_logits" in outputs) == (task in ("backbone", "pretrainer"))
    _assert_parity(onnx_export.verify_onnx(model, directory, rtol=RTOL, atol=ATOL))


@TF_ONLY
def test_conversions_turn_off_tf2onnx_graph_backups_unless_the_user_chose(monkeypatch):
    # tf2onnx reads TF2ONNX_CATCH_ERRORS when it optimizes: "FALSE" skips its deep copy of the graph per optimizer.
    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    with onnx_convert._optimizers_without_backups():
        assert os.environ["TF2ONNX_CATCH_ERRORS"] == "FALSE"
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ
    monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", "TRUE")
    with onnx_convert._optimizers_without_backups():
        assert os.environ["TF2ONNX_CATCH_ERRORS"] == "TRUE"
    assert os.environ["TF2ONNX_CATCH_ERRORS"] == "TRUE"


@TF_ONLY
def test_conversions_write_each_node_into_a_fresh_proto_and_restore_tf2onnx_after():
    # tf2onnx's Node.update_proto deletes and re-adds a node's attributes after every optimizer; in one NodeProto
    # (upb protobuf) each pass kept another copy of a constant's weights.
    from tf2onnx.graph import Graph, Node

    original = Node.update_proto
    graph = Graph([], opset=onnx_export.DEFAULT_OPSET)
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    node = graph.make_const("weights", weights)
    node.update_proto()
    expected = node.op.SerializeToString()
    with onnx_convert._node_protos_rebuilt_on_update():
        protos = []
        for _ in range(3):
            node.update_proto()
            protos.append(node.op)
            assert node.op.SerializeToString() == expected  # name, op type, outputs and the value, unchanged
        assert len({id(proto) for proto in protos}) == 3
    np.testing.assert_array_equal(numpy_helper.to_array(node.op.attribute[0].t), weights)
    assert Node.update_proto is original


@TF_ONLY
def test_fully_padded_rows_stay_finite(bert_exports):
    model, directory = bert_exports["span_qa"]
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[3, 4, 5, 6], [7, 8, 9, 10]], "int32")
    feeds = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.array([[1, 1, 0, 0], [0] * 4],
                                                                                              "int32")}
    start, end = session.run(["start_logits", "end_logits"], feeds)
    expected = model(feeds)
    assert np.isfinite(start).all() and np.isfinite(end).all()
    np.testing.assert_allclose(start, to_numpy(expected["start_logits"]), rtol=RTOL, atol=ATOL)


@TF_ONLY
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW_GENERATIVE else ())
                                  for n in GENERATIVE])
def test_generative_graphs_match_keras(generative_exports, name):
    model, directory = generative_exports[name]
    metadata = onnx_export.load_metadata(directory)
    expected = {"model", "decoder", "decoder_with_past"} | ({"encoder"} if name in ("t5", "bart") else set())
    assert set(metadata["graphs"]) == expected
    _assert_parity(onnx_export.verify_onnx(model, directory, lengths=(1, 4), rtol=RTOL, atol=ATOL))


def _run_all(session, feeds):
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@TF_ONLY
def test_classifier_exports_write_labels_json(bert_exports, tmp_path):
    for task, expected in [("classifier", ["0", "1", "2"]), ("token_classifier", [str(i) for i in range(5)])]:
        directory = bert_exports[task][1]
        assert json.loads((directory / onnx_export.LABELS_FILE).read_text()) == {"labels": expected}
        assert onnx_export.load_metadata(directory)["labels"] == expected
    assert not (bert_exports["backbone"][1] / onnx_export.LABELS_FILE).exists()
    with pytest.raises(ValueError, match="2 labels given for a model with 3 classes"):
        onnx_export.export_onnx(bert_exports["classifier"][0], tmp_path, labels=["a", "b"])


@TF_ONLY
def test_out_of_range_ids_give_nan_rows_and_the_invalid_inputs_flag(bert_exports):
    """ONNX Gather reads id -1 as id V - 1 (and segment -1 as segment 1); the graph flags such rows instead."""
    model, directory = bert_exports["pretrainer"]
    vocabulary = model.backbone.get_config()["vocabulary_size"]
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.tile(np.array([[3, 4, 5, 6]], "int32"), (7, 1))
    segments, mask = np.zeros_like(ids), np.ones_like(ids)
    positions = np.tile(np.array([[1, 2]], "int32"), (7, 1))
    ids[1, 2], ids[2, 3] = -1, vocabulary  # rows 1-6 each hold one bad value
    segments[3, 0], segments[4, 1] = -1, 2
    mask[5, 0], positions[6, 1] = 2, 4
    feeds = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask, "mask_positions": positions}
    outputs = _run_all(session, feeds)
    assert outputs["invalid_inputs"].tolist() == [False] + [True] * 6
    for name in ("mlm_logits", "nsp_logits"):
        assert np.isnan(outputs[name][1:]).all() and np.isfinite(outputs[name][0]).all()
    expected = model({name: value[:1] for name, value in feeds.items()})
    for name in ("mlm_logits", "nsp_logits"):  # the valid row is unchanged
        np.testing.assert_allclose(outputs[name][:1], to_numpy(expected[name]), rtol=RTOL, atol=ATOL)


@TF_ONLY
def test_decoding_graphs_flag_out_of_range_ids_and_positions(generative_exports):
    model, directory = generative_exports["gpt_learned"]
    sizes = onnx_export.load_metadata(directory)["decoding"]
    vocabulary, limit = sizes["vocabulary_size"], sizes["max_sequence_length"]
    decoder = ort.InferenceSession(str(directory / "decoder_model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[5, 6, 7]] * 4, "int32")
    positions = np.tile(np.arange(3, dtype="int32"), (4, 1))
    ids[1, 0], ids[2, 2], positions[3, 2] = -1, vocabulary, limit
    first = _run_all(decoder, {"token_ids": ids, "padding_mask": np.ones_like(ids), "position_ids": positions})
    assert first["invalid_inputs"].tolist() == [False, True, True, True]
    assert np.isnan(first["logits"][1:]).all() and np.isnan(first["present.0.key"][1:]).all()
    assert np.isfinite(first["logits"][0]).all()
    with_past = ort.InferenceSession(str(directory / "decoder_with_past_model.onnx"),
                                     providers=["CPUExecutionProvider"])
    past = {name.replace("present", "past_key_values"): value[:1].repeat(2, 0)
            for name, value in first.items() if name.startswith("present")}
    past_mask = np.ones((2, 4), "int32")
    past_mask[1, 0] = -1
    later = _run_all(with_past, {"token_ids": np.array([[8], [-1]], "int32"), "padding_mask": past_mask,
                                 "position_ids": np.array([[3], [3]], "int32"), **past})
    assert later["invalid_inputs"].tolist() == [False, True] and np.isnan(later["logits"][1]).all()
    generator = OnnxGenerator(directory)
    for options, match in [({"pad_id": -1}, "pad_id"), ({"stop_token_ids": [vocabulary]}, "stop_token_ids"),
                           ({"min_length": -1}, "min_length")]:
        with pytest.raises(ValueError, match=match):
            generator.generate([[5, 6]], max_new_tokens=2, **options)
    with pytest.raises(ValueError, match=r"prompt 0 must hold integer ids in \[0"):
        generator.generate([[5, -1]], max_new_tokens=2)


# === Generation ===


@TF_ONLY
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW_GENERATIVE else ())
                                  for n in GENERATIVE])
def test_onnx_greedy_generation_equals_keras(generative_exports, name):
    model, directory = generative_exports[name]
    options = dict(max_new_tokens=NEW_TOKENS)
    if name in ("t5", "bart"):
        options["decoder_start_id"] = 0
    generator = OnnxGenerator(directory)
    expected = model.generate(helpers.PROMPTS, strategy="greedy", jit_compile=False, **options)
    actual = generator.generate(helpers.PROMPTS, **options)
    np.testing.assert_array_equal(actual, expected)
    assert len(set(expected.ravel().tolist())) > 2  # varied tokens, not one id repeated
    # Stop tokens: rows end after them and are padded with pad_id; the output width shrinks.
    stop = int(expected[0, 2])
    stopped = dict(options, stop_token_ids=[stop], pad_id=60)
    np.testing.assert_array_equal(
        generator.generate(helpers.PROMPTS, **stopped),
        model.generate(helpers.PROMPTS, strategy="greedy", jit_compile=False, **stopped),
    )


@TF_ONLY
def test_onnx_generation_accepts_padded_arrays_and_single_prompts(generative_exports):
    model, directory = generative_exports["gpt_learned"]
    generator = OnnxGenerator(directory)
    ragged = generator.generate(helpers.PROMPTS, max_new_tokens=4)
    ids = np.zeros((3, 6), "int32")
    mask = np.zeros((3, 6), "int32")
    for row, prompt in enumerate(helpers.PROMPTS):  # right-padded input is re-packed to the left
        ids[row, : len(prompt)], mask[row, : len(prompt)] = prompt, 1
    np.testing.assert_array_equal(generator.generate(ids, padding_mask=mask, max_new_tokens=4), ragged)
    single = generator.generate(np.array(helpers.PROMPTS[1]), max_new_tokens=4)
    assert single.shape == (4,)
    np.testing.assert_array_equal(single, ragged[1])


# === int8 ===


@TF_ONLY
def test_int8_models_run_and_mostly_agree(bert_exports, generative_exports, tmp_path):
    rng = np.random.default_rng(0)
    for model, directory, feeds in [
        (*bert_exports["token_classifier"], lambda ids: {"token_ids": ids, "segment_ids": np.zeros_like(ids),
                                                          "padding_mask": np.ones_like(ids)}),
        (*generative_exports["gpt_learned"], lambda ids: {"token_ids": ids, "padding_mask": np.ones_like(ids)}),
    ]:
        copy = tmp_path / directory.name
        shutil.copytree(directory, copy)
        written = onnx_export.quantize_onnx(copy, graphs=["model"])
        int8 = onnx.load(written["model"])
        assert any(node.op_type == "MatMulInteger" for node in int8.graph.node)
        assert not any(node.op_type == "Gemm" for node in int8.graph.node)
        ids = rng.integers(0, 61, (8, 16)).astype("int32")
        fp32_logits, int8_logits = (
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], feeds(ids))[0]
            for path in (copy / "model.onnx", written["model"])
        )
        assert np.isfinite(int8_logits).all()
        assert np.mean(fp32_logits.argmax(-1) == int8_logits.argmax(-1)) >= 0.75
        # verify_onnx reports int8 differences without failing on them.
        report = onnx_export.verify_onnx(model, copy, batch_sizes=(3,), lengths=(5,))
        assert any(row["precision"] == "int8" and "argmax_agreement" in row for row in report)


@TF_ONLY
def test_cli_exports_onnx_with_int8_and_reports_int8_drift_as_information(bert_exports, tmp_path, capsys):
    from kzoo import cli

    model, _ = bert_exports["classifier"]
    source = tmp_path / "classifier.keras"
    model.save(source)
    output = tmp_path / "onnx"
    assert cli.main(["export", str(source), "--format", "onnx", "--output", str(output), "--int8", "--verify"]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if " max abs " in line]
    assert {row[1] for row in rows} == {"fp32", "int8"}
    assert all(row[-1] == "ok" for row in rows if row[1] == "fp32")
    assert all("info" in row for row in rows if row[1] == "int8") and "FAIL" not in printed
    assert (output / "model.int8.onnx").exists()


# === Tampering and errors ===


@TF_ONLY
def test_verify_raises_on_a_tampered_model(bert_exports, tmp_path):
    model, directory = bert_exports["classifier"]
    copy = tmp_path / "tampered"
    shutil.copytree(directory, copy)
    proto = onnx.load(str(copy / "model.onnx"))
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    weight = next(initializers[name] for node in proto.graph.node if node.op_type in ("MatMul", "Gemm")
                  for name in node.input if name in initializers)
    values = numpy_helper.to_array(weight).copy()
    # The whole projection tripled: a small local edit can fall under the tolerance (one query weight moved these
    # logits by 8e-5) or be ignored outright (a constant added to a key unit shifts softmax rows by a constant).
    values *= 3.0
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(proto, str(copy / "model.onnx"))
    with pytest.raises(onnx_export.OnnxParityError, match=r"graph 'model' output 'logits' shape .* max abs diff"):
        onnx_export.verify_onnx(model, copy)


@TF_ONLY
def test_export_errors_name_the_problem(bert_exports, tmp_path):
    import keras

    model, _ = bert_exports["classifier"]
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Sequential is not a kzoo model"):
        onnx_export.export_onnx(plain, tmp_path / "plain")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write to output_dir"):
        onnx_export.export_onnx(model, blocker / "out")
    with pytest.raises(ValueError, match=r"opset must be an int in \[13, 18\]"):
        onnx_export.export_onnx(model, tmp_path / "out", opset=21)
    with pytest.raises(ValueError, match="without decoding graphs"):
        OnnxGenerator(bert_exports["classifier"][1])
    with pytest.raises(ValueError, match="holds no export.json"):
        OnnxGenerator(tmp_path)


@TF_ONLY
def test_an_unconvertible_op_is_named(generative_exports, tmp_path):
    # The in-place KV cache of kzoo.generate (XlaDynamicUpdateSlice) is what tf2onnx cannot convert.
    model, _ = generative_exports["gpt_learned"]
    backbone = model.backbone

    def cached_step(tensors):
        cache = backbone.empty_cache(1, 8)
        hidden, _ = backbone.call_with_cache(tensors["token_ids"], cache, 0, padding_mask=np.ones((1, 8), "int32"))
        return {"logits": backbone.token_logits(hidden)}

    token_ids = onnx_graphs.GraphInput("token_ids", "int32", (1, 1), "token_ids")
    graph = onnx_graphs.Graph("cached", "cached.onnx", [token_ids], cached_step, "a step with the in-place cache")
    with pytest.raises(onnx_export.OnnxExportError, match="XlaDynamicUpdateSlice.*'cached' graph"):
        onnx_convert._convert(graph, str(tmp_path / "cached.onnx"), onnx_export.DEFAULT_OPSET, {})
