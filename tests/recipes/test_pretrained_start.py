"""Fine-tuning recipes starting from a trained checkpoint (`--model.checkpoint`, `kzoo.recipes.pretrained`).

Tiny checkpoints are made once per module and saved as every kzoo run saves its model: `model.keras` with the
tokenizer files in `tokenizer/` beside it (a `bert_test` BertPretrainer with a WordPiece vocabulary trained on other
text than the recipe's, a `t5_test` Seq2SeqLM whose embedding has more rows than its SentencePiece pieces, as T5's
has, and a `gpt_test` GPTCausalLM). Each recipe's `build` must hand the runner the checkpoint's backbone weights
unchanged (the first step starts from them) and the checkpoint's tokenizer; two recipes also train two steps through
`main`. A Hugging Face BERT directory goes through `bert_ner`'s `build`. Every refusal is one line and exit status 2.
"""

import json
import math
import os
import shutil

import numpy as np
import pytest

from kzoo import data, models
from kzoo.recipes import default_corpus, parse_arguments, prepare_tokenizer
from kzoo.text import tokenizer_from_files, train_wordpiece
from kzoo.train import ConfigError
from recipes import bert_classify, bert_ner, seq2seq_translate

QUICK = ["--train.steps=2", "--train.batch_size=8", "--train.warmup_steps=1", "--train.eval_every=2",
         "--train.checkpoint_every=2", "--train.eval_steps=2", "--train.verbose=0"]
BERT_POSITIONS = 40  # the BERT checkpoint's max_sequence_length


def save_run(model, folder, tokenizer_files):
    """Saves `model` as `<folder>/model.keras` and its tokenizer files in `<folder>/tokenizer/`, as a run does."""
    os.makedirs(folder / "tokenizer")
    model.save(folder / "model.keras")
    for basename, path in tokenizer_files.items():
        shutil.copyfile(path, folder / "tokenizer" / basename)
    return folder / "model.keras"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """`{"bert" | "t5" | "gpt": path of model.keras}` and `{name: backbone weights as saved}`."""
    root = tmp_path_factory.mktemp("checkpoints")
    corpus = root / "corpus.txt"  # not the reviews: some of their words are not in this vocabulary
    corpus.write_text("The module reads a file and returns the lines it found.\n"
                      "Each function checks its arguments before it starts to work.\n" * 10)
    wordpiece = {"vocab.txt": train_wordpiece([corpus], 120, root / "wordpiece")}
    bert_size = tokenizer_from_files(wordpiece).vocabulary_size
    bert = models.BertPretrainer(models.from_preset("bert_test", vocabulary_size=bert_size,
                                                    max_sequence_length=BERT_POSITIONS))
    pairs = root / "pairs"
    records = data.read_csv(default_corpus("translation", pairs)["train"], ["source", "target"])[0][:400]
    texts = [record[key] for record in records for key in ("source", "target")]
    spiece, spiece_files = prepare_tokenizer("sentencepiece_unigram", texts, 64, pairs)
    t5 = models.Seq2SeqLM(models.from_preset("t5_test", vocabulary_size=spiece.vocabulary_size + 8,
                                             max_sequence_length=32))
    gpt = models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=spiece.vocabulary_size))
    paths = {"bert": save_run(bert, root / "bert", wordpiece), "t5": save_run(t5, root / "t5", spiece_files),
             "gpt": save_run(gpt, root / "gpt", spiece_files)}
    weights = {"bert": bert.backbone.get_weights(), "t5": t5.backbone.get_weights()}
    return paths, weights


def build(recipe, name, workdir, *arguments):
    config = parse_arguments(name, recipe.Config(), [*QUICK, f"--train.output_dir={workdir}", *arguments])
    return recipe.build(config, str(workdir))


def assert_same_weights(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(got, want)  # copied, not retrained or re-initialised: exact


def finished_run(output):
    with open(output / "result.json", encoding="utf-8") as file:
        result = json.load(file)
    assert result["steps"] == 2 and math.isfinite(result["first_loss"]) and math.isfinite(result["eval"]["loss"])
    return result


def test_bert_classify_starts_from_a_kzoo_keras_file(checkpoints, tmp_path):
    paths, weights = checkpoints
    checkpoint = f"--model.checkpoint={paths['bert']}"
    parts = build(bert_classify, "bert_classify", tmp_path / "built", checkpoint, "--data.eval_examples=8")
    assert isinstance(parts.model, models.BertClassifier) and parts.model.num_classes == 2  # a new head
    assert_same_weights(parts.model.backbone.get_weights(), weights["bert"])
    assert parts.tokenizer_files == {"vocab.txt": str(paths["bert"].parent / "tokenizer" / "vocab.txt")}
    unknown = parts.tokenizer.special_token_ids["unk"]
    features = next(iter(parts.train_dataset))[0]
    assert (np.asarray(features["token_ids"]) == unknown).any()  # review words the vocabulary cannot spell

    output = tmp_path / "run"
    bert_classify.main([*QUICK, f"--train.output_dir={output}", checkpoint, "--data.sequence_length=16",
                        "--data.eval_examples=16"])
    result = finished_run(output)
    assert 0.0 <= result["eval"]["accuracy"] <= 1.0
    assert sorted(os.listdir(output / "tokenizer")) == ["labels.json", "vocab.txt"]
    assert (output / "tokenizer" / "vocab.txt").read_bytes() == (paths["bert"].parent / "tokenizer" /
                                                                 "vocab.txt").read_bytes()


def test_seq2seq_translate_starts_from_a_t5_keras_file(checkpoints, tmp_path):
    paths, weights = checkpoints
    checkpoint = f"--model.checkpoint={paths['t5']}"
    lengths = ["--data.encoder_sequence_length=16", "--data.decoder_sequence_length=16", "--data.decode_examples=8"]
    parts = build(seq2seq_translate, "seq2seq_translate", tmp_path / "built", checkpoint, *lengths)
    assert isinstance(parts.model, models.Seq2SeqLM)
    assert_same_weights(parts.model.backbone.get_weights(), weights["t5"])
    # The embedding has 8 rows more than the tokenizer has pieces (as T5's): accepted, the ids fit.
    assert parts.model.backbone.vocabulary_size == parts.tokenizer.vocabulary_size + 8
    # (Training from here is the same runner path bert_classify's test above runs end to end.)


def test_bert_ner_starts_from_a_hugging_face_directory(tmp_path):
    reason = "the Hugging Face fixture needs torch and transformers (the test extra: tools/setup.sh installs them)"
    pytest.importorskip("torch", reason=reason)
    pytest.importorskip("transformers", reason=reason)
    from kzoo.convert import from_checkpoint_directory
    from tests.convert.hf_fixtures import make_bert

    directory, _ = make_bert(tmp_path)  # BertForPreTraining: vocabulary 101, 64 positions, no tokenizer files
    checkpoint = f"--model.checkpoint={directory}"
    with pytest.raises(ConfigError, match="has no tokenizer files"):
        build(bert_ner, "bert_ner", tmp_path / "untokenized", checkpoint)
    words = ["the", "of", "in", "mayor", "thanked", "for", "donation", "health", "city", "met", "with", "and",
             "said", "at", "on", "new", "north", "south", "bank", "san", "group", "visited", "to", "."]
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{letter}" for letter in letters),
                  *words]
    vocabulary += [f"##{digit}" for digit in range(101 - len(vocabulary))]
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocabulary) + "\n")

    parts = build(bert_ner, "bert_ner", tmp_path / "built", checkpoint, "--data.sequence_length=32",
                  "--data.eval_examples=8")
    assert isinstance(parts.model, models.BertTokenClassifier)
    assert_same_weights(parts.model.backbone.get_weights(), from_checkpoint_directory(directory).backbone.get_weights())
    features, _, _ = next(iter(parts.train_dataset))
    assert parts.model(features).shape == (8, 32, parts.model.num_classes)
    with pytest.raises(ConfigError, match=r"data.sequence_length=80 exceeds the 64 positions .* "
                                          r"pass --data.sequence_length=64 or less"):
        build(bert_ner, "bert_ner", tmp_path / "long", checkpoint, "--data.sequence_length=80")
    with pytest.raises(ConfigError, match=r"holds a 'bert' checkpoint \(bert family\), not a 'seq2seq' model"):
        build(seq2seq_translate, "seq2seq_translate", tmp_path / "t5", checkpoint)


@pytest.mark.backend("tensorflow", reason="the loader refuses before any backend work, the same under every backend")
@pytest.mark.parametrize("recipe, checkpoint, arguments, message", [
    (bert_classify, "gpt", [], "holds a GPTCausalLM (gpt family), not a bert model: pass a bert checkpoint"),
    (seq2seq_translate, "bert", [], "holds a BertPretrainer (bert family), not a seq2seq model"),
    (bert_classify, "bert", ["--model.overrides=num_layers=1"], "cannot change a checkpoint's architecture"),
    (bert_classify, "bert", ["--data.sequence_length=48"], f"exceeds the {BERT_POSITIONS} positions"),
    (bert_classify, "bert", ["--data.tokenizer_dir=T5_TOKENIZER"], "does not fit the model"),
    (bert_classify, "bert_alone", [], "no tokenizer folder"),
    (bert_classify, "folder", [], "is neither a .keras file nor a directory with config.json"),
    (bert_classify, "missing", [], "does not exist: pass a kzoo .keras file"),
], ids=["gpt_for_bert", "bert_for_seq2seq", "overrides", "positions", "vocabulary", "no_tokenizer", "not_a_model",
        "missing"])
def test_refusals_are_one_line_and_exit_2(recipe, checkpoint, arguments, message, checkpoints, tmp_path, capsys):
    paths = dict(checkpoints[0])
    paths["bert_alone"] = tmp_path / "alone" / "model.keras"  # a .keras file without a tokenizer/ folder beside it
    paths["bert_alone"].parent.mkdir()
    shutil.copyfile(paths["bert"], paths["bert_alone"])
    paths["folder"], paths["missing"] = tmp_path, tmp_path / "nothing.keras"
    arguments = [argument.replace("T5_TOKENIZER", str(paths["t5"].parent / "tokenizer")) for argument in arguments]
    with pytest.raises(SystemExit) as stopped:
        recipe.main([*QUICK, f"--train.output_dir={tmp_path / 'run'}", f"--model.checkpoint={paths[checkpoint]}",
                     *arguments])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error, error
    assert message in error and error.startswith("kzoo train ")
    assert not (tmp_path / "run" / "model.keras").exists()
