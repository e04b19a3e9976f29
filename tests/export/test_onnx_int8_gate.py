"""The int8 quality gate of ONNX exports (`kzoo.export.onnx.quality`, `kzoo export --int8 --verify`) and the held-out
sample a run keeps for it (`kzoo.recipes.heldout`).

The metrics are checked by hand on small NumPy outputs (both backends); the gate itself on a `bert_classify` run
trained for a few steps on the default corpus (its held-out accuracy from the recipe must reappear as the fp32
figure) and on a randomized `gpt_test` LM (greedy token agreement, recomputed here with `OnnxGenerator`). Each fails
when its int8 graph is damaged or the threshold is set below the measured drop. Exports need TensorFlow.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from kzoo.export import onnx as onnx_export
from kzoo.export.onnx import quality
from kzoo.recipes.heldout import HeldoutSample, load_heldout_sample, save_heldout_sample

TF_ONLY = pytest.mark.backend("tensorflow", reason="ONNX export converts TensorFlow graphs (tf2onnx)")


# === The held-out sample (both backends) ===


def test_heldout_sample_keeps_the_first_examples_of_every_part(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (10, 6)).astype("int32")
    targets = {"mlm_logits": rng.integers(0, 50, (10, 2)).astype("int32"), "nsp_logits": np.arange(10, dtype="int32")}
    weights = {"mlm_logits": rng.random((10, 2)).astype("float32"), "nsp_logits": np.ones(10, "float32")}
    dataset = tf.data.Dataset.from_tensor_slices(({"token_ids": ids, "padding_mask": ids > 3}, targets, weights))
    path = save_heldout_sample(tmp_path, dataset.batch(4), limit=7)  # cuts inside the second batch
    assert path == str(tmp_path / "heldout.npz")
    sample = load_heldout_sample(path)
    assert sample.size == 7 and set(sample.inputs) == {"token_ids", "padding_mask"}
    np.testing.assert_array_equal(sample.inputs["token_ids"], ids[:7])
    np.testing.assert_array_equal(sample.inputs["padding_mask"], ids[:7] > 3)
    np.testing.assert_array_equal(sample.targets["nsp_logits"], np.arange(7))
    np.testing.assert_array_equal(sample.sample_weights["mlm_logits"], weights["mlm_logits"][:7])
    # (inputs, labels) batches, smaller than the limit: everything, the labels as one array, no weights.
    pairs = tf.data.Dataset.from_tensor_slices(({"token_ids": ids}, np.arange(10))).batch(3)
    (tmp_path / "pairs").mkdir()
    sample = load_heldout_sample(save_heldout_sample(tmp_path / "pairs", pairs))
    assert sample.size == 10 and sample.sample_weights is None
    np.testing.assert_array_equal(sample.targets, np.arange(10))
    assert save_heldout_sample(tmp_path, None) is None
    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        save_heldout_sample(tmp_path, pairs, limit=0)
    (tmp_path / "other.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="is not a readable held-out sample"):
        load_heldout_sample(tmp_path / "other.npz")


# === The metrics, by hand (both backends) ===


def _one_hot(ids, classes):
    return np.eye(classes, dtype="float32")[np.asarray(ids)]


def test_task_scores_compute_each_metric_against_the_gold_targets():
    mask = np.ones((4, 5), "int32")
    # Classifier: fp32 right on 3 of 4, int8 on 2 of 4.
    gold = HeldoutSample({}, np.array([0, 1, 1, 1]))
    scores = quality.task_scores("BertClassifier", {"logits": _one_hot([0, 1, 1, 0], 2)},
                                 {"logits": _one_hot([0, 1, 0, 0], 2)}, {"padding_mask": mask}, gold)
    assert (scores.metric, scores.fp32, scores.int8, scores.count) == ("accuracy", 75.0, 50.0, 4)
    # Without targets: agreement with the fp32 predictions (3 of 4).
    scores = quality.task_scores("BertClassifier", {"logits": _one_hot([0, 1, 1, 0], 2)},
                                 {"logits": _one_hot([0, 1, 0, 0], 2)}, {"padding_mask": mask})
    assert (scores.metric, scores.fp32, scores.int8) == ("class agreement with fp32", 100.0, 75.0)
    # Tagger, [CLS] w1 w2 w3 [SEP]: sentence 1 has PER over w1-w2, sentence 2 PER at w2. fp32 finds both; int8
    # cuts the first to w1 (a wrong entity): precision 1/2, recall 1/2, F1 50. Non-first sub-tokens do not count.
    tags = ["O", "B-PER", "I-PER"]
    first = np.array([[0, 1, 1, 1, 0], [0, 1, 1, 1, 0]], "float32")
    gold_ids = np.array([[0, 1, 2, 0, 0], [0, 0, 1, 0, 0]])
    fp32 = np.array([[2, 1, 2, 0, 1], [1, 0, 1, 0, 0]])
    int8 = np.array([[0, 1, 0, 0, 0], [0, 0, 1, 0, 2]])
    scores = quality.task_scores("BertTokenClassifier", {"logits": _one_hot(fp32, 3)}, {"logits": _one_hot(int8, 3)},
                                 {"padding_mask": mask[:2]}, HeldoutSample({}, gold_ids, first), tags)
    assert (scores.metric, scores.fp32, scores.int8) == ("entity F1", 100.0, 50.0)
    with pytest.raises(ValueError, match="needs BIO tag names"):
        quality.task_scores("BertTokenClassifier", {"logits": _one_hot(fp32, 3)}, {"logits": _one_hot(int8, 3)},
                            {"padding_mask": mask[:2]}, HeldoutSample({}, gold_ids, first), ["0", "1", "2"])
    # Span QA: the best span of each row against the gold (start, end); int8 misses the end of row 1.
    start = np.full((2, 5), -5.0, "float32")
    end = start.copy()
    start[0, 1], end[0, 2], start[1, 3], end[1, 3] = 4.0, 4.0, 4.0, 4.0
    bad_end = end.copy()
    bad_end[1, 4] = 9.0
    spans = HeldoutSample({}, {"start_logits": np.array([1, 3]), "end_logits": np.array([2, 3])})
    scores = quality.task_scores("BertSpanQA", {"start_logits": start, "end_logits": end},
                                 {"start_logits": start, "end_logits": bad_end}, {"padding_mask": mask[:2]}, spans)
    assert (scores.metric, scores.fp32, scores.int8) == ("exact span match", 100.0, 50.0)
    # Masked LM: 3 weighted slots (the fourth is padding); int8 wrong on one weighted slot and on the padded one.
    targets = {"mlm_logits": np.array([[4, 5], [6, 7]])}
    slots = {"mlm_logits": np.array([[1.0, 1.0], [1.0, 0.0]], "float32")}
    scores = quality.task_scores("BertPretrainer", {"mlm_logits": _one_hot([[4, 5], [6, 7]], 8)},
                                 {"mlm_logits": _one_hot([[4, 1], [6, 1]], 8)}, {"padding_mask": mask[:2]},
                                 HeldoutSample({}, targets, slots))
    assert (scores.metric, scores.count) == ("masked-token accuracy", 3)
    assert scores.fp32 == 100.0 and scores.int8 == pytest.approx(200 / 3)


# === The gate on a trained classifier ===


def _scramble_int8_weights(proto):
    """Shuffles the values of every int8 weight of a quantized graph in place (a deliberately damaged model)."""
    rng = np.random.default_rng(0)
    for tensor in proto.graph.initializer:
        if tensor.data_type == onnx.TensorProto.INT8:
            values = numpy_helper.to_array(tensor)
            scrambled = rng.permutation(values.reshape(-1)).reshape(values.shape)
            tensor.CopyFrom(numpy_helper.from_array(scrambled, tensor.name))


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """bert_classify on its default corpus, 180 steps of `bert_test` (~88% held-out accuracy), exported with
    `kzoo export --format onnx --int8 --verify`: (run dir, export dir, exit status, stdout, stderr)."""
    from recipes import bert_classify

    run = tmp_path_factory.mktemp("classify") / "run"
    bert_classify.main(["--model.preset=bert_test", "--train.steps=180", "--train.batch_size=16",
                        "--train.warmup_steps=10", "--train.learning_rate=3e-3", "--train.eval_every=180",
                        "--train.checkpoint_every=120", "--train.verbose=0", "--data.vocabulary_size=200",
                        "--data.eval_examples=128", f"--train.output_dir={run}"])
    return run


@TF_ONLY
def test_a_run_keeps_its_held_out_sample_and_the_gate_scores_it(classifier_run, tmp_path, capsys):
    from kzoo import cli

    result = json.loads((classifier_run / "result.json").read_text())
    assert result["heldout"] == str(classifier_run / "heldout.npz")
    sample = load_heldout_sample(result["heldout"])
    assert sample.size == 128 and sample.targets.shape == (128,)  # all the recipe scored (eval_examples=128)
    output = tmp_path / "onnx"
    status = cli.main(["export", str(classifier_run), "--format", "onnx", "--output", str(output), "--int8",
                       "--verify"])
    printed = capsys.readouterr().out
    report = onnx_export.load_metadata(output)["int8_quality"]
    assert status == 0 and report["passed"] and "int8 quality gate (accuracy" in printed
    assert (report["metric"], report["basis"], report["examples"]) == ("accuracy", "the gold targets", 128)
    # The fp32 graph's accuracy is the recipe's own held-out accuracy (Keras, the same 128 examples).
    assert report["fp32"] == pytest.approx(100 * result["eval"]["accuracy"], abs=100 / 128 + 1e-9)
    assert report["fp32"] > 60.0  # it learned
    assert report["drop"] == pytest.approx(report["fp32"] - report["int8"]) and report["drop"] <= 1.0
    assert f"fp32 {report['fp32']:.2f}%  int8 {report['int8']:.2f}%  drop {report['drop']:.2f} points" in printed

    # A damaged int8 graph (its int8 weights shuffled) loses far more than a point: the gate fails.
    damaged = tmp_path / "damaged"
    shutil.copytree(output, damaged)
    proto = onnx.load(str(damaged / "model.int8.onnx"))
    _scramble_int8_weights(proto)
    onnx.save(proto, str(damaged / "model.int8.onnx"))
    report = onnx_export.int8_quality(damaged, sample)
    assert not report["passed"] and report["drop"] > 5.0 and report["reason"].startswith("the int8 graphs lose")
    assert onnx_export.load_metadata(damaged)["int8_quality"]["passed"] is False

    # Without a held-out sample (a lone .keras file): agreement with the fp32 predictions on random inputs.
    report = onnx_export.int8_quality(output, None, record=False)
    assert report["basis"] == "the fp32 predictions" and "random" in report["data"] and report["fp32"] == 100.0


@TF_ONLY
def test_the_gate_fails_the_export_with_one_line_after_the_report(classifier_run, tmp_path, capsys):
    from kzoo import cli

    output = tmp_path / "onnx"
    status = cli.main(["export", str(classifier_run), "--format", "onnx", "--output", str(output), "--int8",
                       "--verify", "--int8-max-drop", "-1", "--eval-examples", str(classifier_run / "heldout.npz")])
    captured = capsys.readouterr()
    assert status == 2
    assert "fp32 " in captured.out and "(allowed -1)  FAIL" in captured.out
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("kzoo export: the int8 graphs lose") and "more than the allowed -1" in error
    assert onnx_export.load_metadata(output)["int8_quality"]["max_drop"] == -1.0


def test_gate_options_need_int8_and_verify(tmp_path, capsys):
    from kzoo import cli

    assert cli.main(["export", str(tmp_path), "--format", "onnx", "--output", str(tmp_path / "o"),
                     "--int8-max-drop", "2"]) == 2
    assert "add --format onnx --int8 --verify" in capsys.readouterr().err


# === The gate on generation ===


@pytest.fixture(scope="module")
def gpt_export(tmp_path_factory):
    """A randomized `gpt_test` GPTCausalLM exported with its decoding graphs and quantized."""
    from kzoo import models
    from tests.generate import helpers

    model = models.GPTCausalLM(models.from_preset("gpt_test", dropout=0.0))
    helpers.randomize(model, seed=0)
    directory = tmp_path_factory.mktemp("gpt")
    onnx_export.export_onnx(model, directory)
    onnx_export.quantize_onnx(directory)
    return directory


@TF_ONLY
def test_generation_is_judged_by_greedy_token_agreement(gpt_export, tmp_path):
    import tensorflow as tf

    from kzoo.export.onnx_generate import OnnxGenerator

    windows = np.random.default_rng(1).integers(0, 128, (40, 24)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(({"token_ids": windows, "padding_mask": np.ones_like(windows)},
                                                  windows)).batch(8)
    sample = load_heldout_sample(save_heldout_sample(tmp_path, dataset))
    report = onnx_export.int8_quality(gpt_export, sample, max_drop=100.0)
    # Recomputed: the first 12 tokens (half a window) of the first 32 windows, 16 greedy tokens each.
    options = dict(max_new_tokens=16)
    fp32 = OnnxGenerator(gpt_export).generate(windows[:32, :12], **options)
    int8 = OnnxGenerator(gpt_export, int8=True).generate(windows[:32, :12], **options)
    assert report["metric"] == "greedy token agreement with fp32" and report["fp32"] == 100.0
    assert (report["examples"], report["count"]) == (32, 512)
    assert report["int8"] == pytest.approx(100 * np.mean(fp32 == int8)) and report["int8"] > 80.0
    # The verdict follows the threshold exactly.
    assert onnx_export.int8_quality(gpt_export, sample, max_drop=report["drop"], record=False)["passed"]
    assert not onnx_export.int8_quality(gpt_export, sample, max_drop=report["drop"] - 0.01, record=False)["passed"]
    # A damaged int8 decoding graph (its int8 weights shuffled): every step after the prompt goes astray.
    damaged = tmp_path / "damaged"
    shutil.copytree(gpt_export, damaged)
    path = damaged / "decoder_with_past_model.int8.onnx"
    proto = onnx.load(str(path))
    _scramble_int8_weights(proto)
    onnx.save(proto, str(path))
    broken = onnx_export.int8_quality(damaged, sample)
    assert not broken["passed"] and broken["int8"] < report["int8"] - 10.0
