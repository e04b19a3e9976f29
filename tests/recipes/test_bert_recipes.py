"""Smoke runs of the BERT recipes (pretraining, classification, NER, span QA), and config errors.

Each recipe runs through its `main(argv)` for two steps on tiny settings (`bert_test`,
a small vocabulary, short sequences, a few held-out examples) and must leave the
model, a checkpoint, the resolved config, TensorBoard logs, its tokenizer files and a
result whose task metrics are finite fractions; the classifier's TensorBoard logs are
read back for its task pictures (confusion-matrix image, per-class table).
"""

import glob
import json
import math
import os

import keras
import numpy as np
import pytest

from recipes import bert_classify, bert_ner, bert_pretrain, bert_qa


QUICK = ["--model.preset=bert_test", "--train.steps=2", "--train.batch_size=8", "--train.warmup_steps=1",
         "--train.eval_every=2", "--train.checkpoint_every=2", "--train.verbose=0", "--data.vocabulary_size=200"]


def run(main, output_dir, *arguments):
    result = main([*QUICK, f"--train.output_dir={output_dir}", *arguments])
    assert result["steps"] == 2 and result["steps_this_run"] == 2
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["last_loss"])
    assert math.isfinite(result["eval"]["loss"])
    for name in ("model.keras", "config.yaml", "result.json", os.path.join("tokenizer", "vocab.txt")):
        assert os.path.isfile(os.path.join(output_dir, name)), name
    assert result["checkpoint"] == os.path.join(output_dir, "checkpoints", "step-000000002")
    assert os.path.isdir(result["checkpoint"]) and os.listdir(result["checkpoint"])
    assert any(files for _, _, files in os.walk(os.path.join(output_dir, "logs")))
    with open(os.path.join(output_dir, "result.json"), encoding="utf-8") as file:
        assert json.load(file)["steps"] == 2
    return result["eval"]


def fractions(evaluation, *names):
    return all(0.0 <= evaluation[name] <= 1.0 for name in names)


def test_pretrain_smoke(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for index in range(4):  # one document a file, a sentence a line
        (corpus / f"doc{index}.txt").write_text("\n".join(
            f"Document {index} sentence {line} talks about topic {index * 7 + line} at length." for line in range(12)))
    evaluation = run(bert_pretrain.main, tmp_path / "out", f"--data.train_files={corpus}",
                     f"--data.eval_files={corpus / 'doc0.txt'},{corpus / 'doc1.txt'}", "--data.sequence_length=32",
                     "--data.max_predictions=5", "--data.dupe_factor=2")
    assert fractions(evaluation, "mlm_logits_accuracy", "nsp_logits_accuracy")
    assert evaluation["mlm_perplexity"] == pytest.approx(math.exp(evaluation["mlm_logits_loss"]), rel=1e-6)
    assert evaluation["mlm_logits_loss"] > 1.0  # a near-random model over ~200 pieces


def eval_summaries(output_dir):
    """`{tag: value proto}` of the last evaluation's summaries in `<output_dir>/logs/eval`."""
    import tensorflow as tf

    summaries = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "logs", "eval", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            summaries.update({value.tag: value for value in event.summary.value})
    return summaries


def test_classify_smoke_and_reload(tmp_path):
    import tensorflow as tf

    output = tmp_path / "out"
    evaluation = run(bert_classify.main, output, "--data.eval_examples=24")
    assert fractions(evaluation, "accuracy", "macro_f1")
    # The task pictures in TensorBoard: the confusion matrix as a PNG image, per-class scores as markdown text.
    summaries = eval_summaries(output)
    width, height, png = summaries["confusion_matrix"].tensor.string_val
    pixels = tf.io.decode_png(png).numpy()
    assert pixels.shape == (int(height), int(width), 3) and pixels.shape[0] > 200
    table = summaries["per_class_scores"].tensor.string_val[0].decode("utf-8")
    assert table.startswith("| class | precision | recall | F1 | support |")
    assert "| negative |" in table and "| positive |" in table
    assert table.splitlines()[-1].startswith("| **macro average** |") and table.endswith(" | 24 |")
    assert "confusion_matrix" not in evaluation and "per_class_scores" not in evaluation  # not scalars
    with open(output / "tokenizer" / "labels.json", encoding="utf-8") as file:
        assert json.load(file)["labels"] == ["negative", "positive"]
    model = keras.saving.load_model(output / "model.keras", compile=False)
    inputs = {"token_ids": np.array([[2, 10, 11, 3]]), "segment_ids": np.zeros((1, 4), "int32"),
              "padding_mask": np.ones((1, 4), "int32")}
    assert model(inputs).shape == (1, 2)


def test_ner_smoke(tmp_path):
    evaluation = run(bert_ner.main, tmp_path / "out", "--data.eval_examples=16", "--data.sequence_length=32")
    assert fractions(evaluation, "accuracy", "entity_precision", "entity_recall", "entity_f1")
    with open(tmp_path / "out" / "tokenizer" / "labels.json", encoding="utf-8") as file:
        assert {"O", "B-PER", "I-PER", "B-LOC", "B-ORG"} <= set(json.load(file)["labels"])


def test_qa_smoke(tmp_path):
    evaluation = run(bert_qa.main, tmp_path / "out", "--data.corpus_size=12", "--data.eval_examples=8")
    assert fractions(evaluation, "start_logits_accuracy", "end_logits_accuracy", "exact_match", "f1")
    assert evaluation["exact_match"] <= evaluation["f1"]


@pytest.mark.parametrize("argument, message", [
    ("--data.no_such_key=1", "unknown config key 'data.no_such_key'"),
    ("--train.steps=many", "train.steps expects int, got 'many'"),
    ("--data.sequence_length=1.5", "data.sequence_length expects int"),
])
def test_config_errors_exit_with_status_2(argument, message, capsys, tmp_path):
    for main in (bert_pretrain.main, bert_classify.main, bert_ner.main, bert_qa.main):
        with pytest.raises(SystemExit) as exit_info:
            main([argument, f"--train.output_dir={tmp_path}"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert message in error and error.startswith("kzoo train bert_") and "Traceback" not in error


def test_user_data_errors_exit_with_status_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bert_classify.main(["--data.train_file=train.csv", f"--train.output_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "--data.train_file needs --data.eval_file" in capsys.readouterr().err
