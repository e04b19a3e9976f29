"""What the recipes do with faulty user data: counts printed, bad files refused in one line, unseen labels scored.

Errors are checked through `main(argv)` (they stop before a model is built); the scoring of
held-out labels unseen in training goes through `bert_classify.build` with the tiny preset.
"""

import json

import numpy as np
import pytest

from recipes import bert_classify, bert_ner, bert_qa, gpt_pretrain
from tests.data.helpers import write


WORDS = ("good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "actor", "music", "very", "not")


def _reviews(count, seed, labels=("pos", "neg")):
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(WORDS, size=5)), labels[i % len(labels)]) for i in range(count)]


def _csv(path, rows):
    return write(path, "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))


def _exit_message(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in error and error.count("\n") == 1, error
    return error


def _classify_config(tmp_path, train, dev):
    config = bert_classify.Config()
    config.model.preset = "bert_test"
    config.data.train_file, config.data.eval_file = train, dev
    config.data.vocabulary_size, config.data.sequence_length = 120, 12
    config.train.batch_size = 4
    return config


def test_classify_scores_unseen_held_out_labels_as_wrong_and_says_so(tmp_path, capsys):
    train = _csv(tmp_path / "train.csv", _reviews(40, 0))
    dev = _csv(tmp_path / "dev.csv", _reviews(6, 1) + [("good plot", "neutral")] + _reviews(3, 2)
               + [("fine music", "neutral"), ("not bad", "mixed")])
    parts = bert_classify.build(_classify_config(tmp_path, train, dev), str(tmp_path / "work"))
    message = capsys.readouterr().err
    assert (f"3 of 12 held-out examples have labels never seen in training: 'neutral' x2 (first at {dev}:8); "
            f"'mixed' x1 (first at {dev}:13). accuracy and macro_f1 count them as wrong") in message
    scores = parts.evaluators[0](parts.model, {})
    # The loss dataset holds the 9 seen examples; the 3 unseen ones are wrong whatever the model says.
    seen_logits = parts.model.predict(parts.eval_dataset, verbose=0)
    seen_gold = [0 if label == "neg" else 1 for _, label in _reviews(6, 1) + _reviews(3, 2)]
    right = int(np.sum(seen_logits.argmax(-1) == np.array(seen_gold)))
    assert len(seen_logits) == 9
    assert scores["accuracy"] == pytest.approx(right / 12, abs=1e-12)
    assert 0.0 <= scores["macro_f1"] <= 2 / 4 + 1e-9  # 4 classes, 'neutral' and 'mixed' score 0
    # The task pictures name the unseen labels too: never predicted, so all zeros, with their held-out support.
    rows = scores["per_class_scores"].splitlines()
    assert rows[4:6] == ["| neutral (unseen) | 0.000 | 0.000 | 0.000 | 2 |",
                         "| mixed (unseen) | 0.000 | 0.000 | 0.000 | 1 |"]
    assert rows[6] == f"| **macro average** | {rows[6].split(' | ')[1]} | {rows[6].split(' | ')[2]} | " \
                      f"{scores['macro_f1']:.3f} | 12 |"
    assert scores["confusion_matrix"].dtype == np.uint8 and scores["confusion_matrix"].shape[2] == 3


def test_classify_refuses_held_out_data_with_no_training_label(tmp_path, capsys):
    train = _csv(tmp_path / "train.csv", _reviews(12, 0))
    dev = _csv(tmp_path / "dev.csv", _reviews(4, 1, labels=("1", "0")))
    error = _exit_message(bert_classify.main, [f"--data.train_file={train}", f"--data.eval_file={dev}",
                                               f"--train.output_dir={tmp_path / 'out'}"], capsys)
    assert "none of the held-out labels ['0', '1'] occurs in the training labels ['neg', 'pos']" in error


def test_recipes_print_counts_of_lines_that_are_not_utf8(tmp_path, capsys):
    rows = _reviews(20, 0)
    path = tmp_path / "train.csv"
    path.write_bytes(("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows[:10])).encode()
                     + "café crème,pos\n".encode("latin-1")
                     + "".join(f"{t},{label}\n" for t, label in rows[10:]).encode())
    config = _classify_config(tmp_path, str(path), _csv(tmp_path / "dev.csv", _reviews(4, 1)))
    train, _ = bert_classify.read_records(config, str(tmp_path / "work"))
    assert len(train) == 20
    assert (f"kzoo train bert_classify: training data: skipped 1 of 22 lines that are not UTF-8 text in {path}\n"
            "kzoo train bert_classify: training data: dropped 1 records that contained them") in capsys.readouterr().err


def test_binary_file_in_the_data_folder_is_refused_naming_it(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    for index in range(3):
        write(folder / f"doc{index}.txt", "\n".join(f"Sentence {i} of document {index}." for i in range(5)))
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(20_000))
    error = _exit_message(gpt_pretrain.main, [f"--data.train_files={folder}", f"--train.output_dir={tmp_path / 'o'}"],
                          capsys)
    assert f"{folder / 'cover.jpg'}" in error and "lines are not UTF-8 text" in error and "convert it to UTF-8" in error


def test_header_only_csv_is_blamed_not_the_vocabulary_corpus(tmp_path, capsys):
    train = write(tmp_path / "train.csv", "text,label\n")
    dev = _csv(tmp_path / "dev.csv", _reviews(4, 1))
    error = _exit_message(bert_classify.main, [f"--data.train_file={train}", f"--data.eval_file={dev}",
                                               f"--train.output_dir={tmp_path / 'out'}"], capsys)
    assert f"{train}: only a header row" in error and "vocabulary" not in error


def test_unseen_ner_tag_names_file_and_line(tmp_path, capsys):
    train = write(tmp_path / "train.conll", "".join(f"w{i} O\nParis B-LOC\n\n" for i in range(8)))
    dev = write(tmp_path / "dev.conll", "w1 O\n\nAcme B-ORG\nsells O\n")
    error = _exit_message(bert_ner.main, [f"--data.train_file={train}", f"--data.eval_file={dev}",
                                          "--model.preset=bert_test", "--data.vocabulary_size=60",
                                          f"--train.output_dir={tmp_path / 'out'}"], capsys)
    assert f"{dev}:3: label 'B-ORG' was not seen in training" in error and "Fix the tag" in error


def test_squad_negative_answer_start_exits_2_naming_file_and_question(tmp_path, capsys):
    context = "Ada Lovelace was born in London in 1815."
    qas = [{"id": "q1", "question": "Where?", "answers": [{"text": "London", "answer_start": context.index("London")}]},
           {"id": "q2", "question": "When?", "answers": [{"text": "1815", "answer_start": -5}]}]
    path = write(tmp_path / "train.json", json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]},
                                                     indent=1))
    error = _exit_message(bert_qa.main, [f"--data.train_file={path}", f"--data.eval_file={path}",
                                         f"--train.output_dir={tmp_path / 'out'}"], capsys)
    assert f"{path}:" in error and "question 'q2': answer_start must be a non-negative integer" in error


def test_prepare_tokenizer_learns_from_a_document_longer_than_a_trainer_line(tmp_path):
    # The recipes pass a document as one string; sentencepiece skipped lines over 16,384 bytes, so a 58 KB document
    # contributed nothing and its words came out as <unk>.
    from kzoo.recipes import prepare_tokenizer

    rng = np.random.default_rng(0)
    greek = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "omicron")
    long_document = " ".join(str(rng.choice(greek)) + str(rng.choice(["", "s", "ed"])) for _ in range(9000))
    assert len(long_document.encode("utf-8")) > 50_000
    small = [f"w{i} w{i + 1} w{i + 2}." for i in range(300)]
    tokenizer, _ = prepare_tokenizer("sentencepiece", [long_document, *small], 70, str(tmp_path))
    ids = tokenizer.tokenize(["alphas zeta kappaed omicron"]).to_list()[0]
    assert tokenizer.token_to_id("<unk>") not in ids


def test_blank_label_or_target_cell_names_file_and_line(tmp_path, capsys):
    # A blank label became a class "" and a blank target taught the model to stop at once, both silently.
    train = _csv(tmp_path / "train.csv", _reviews(6, 0) + [("good movie", " ")] + _reviews(3, 1))
    config = _classify_config(tmp_path, train, _csv(tmp_path / "dev.csv", _reviews(4, 1)))
    with pytest.raises(ValueError, match=rf"{train}:8: the 'label' cell is empty; fill it or remove the row"):
        bert_classify.read_records(config, str(tmp_path / "work"))

    from kzoo.recipes import read_text_pairs

    pairs = write(tmp_path / "pairs.tsv", "src\ttgt\na b\tc d\ne f\t\ng h\ti j\n")
    data_config = type("DataConfig", (), {"source_column": "src", "target_column": "tgt", "train_files": pairs,
                                          "eval_files": pairs})()
    with pytest.raises(ValueError, match=rf"{pairs}:3: the 'tgt' cell is empty"):
        read_text_pairs("translation", data_config, str(tmp_path / "work"))
