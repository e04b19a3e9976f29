"""Vocabulary training: the files load in kzoo and in the reference libraries; bad corpora fail clearly."""

import numpy as np
import pytest
import sentencepiece

from kzoo import text
from kzoo.cli.vocab import run as vocab_command


def test_train_wordpiece_writes_a_bert_vocab(corpus_file, tmp_path):
    path = text.train_wordpiece([corpus_file], 300, tmp_path / "out", lowercase=True)
    tokens = open(path, encoding="utf-8").read().splitlines()
    assert path.endswith("vocab.txt") and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(tokens) <= 300 and len(set(tokens)) == len(tokens)
    assert any(t.startswith("##") for t in tokens)
    assert not any(t != t.lower() for t in tokens if not t.startswith("["))  # uncased
    tokenizer = text.WordPieceTokenizer.from_files(path)
    assert tokenizer.vocabulary_size == len(tokens)


def test_train_sentencepiece_writes_a_t5_model(corpus_file, tmp_path):
    path = text.train_sentencepiece([corpus_file], 200, tmp_path / "out")
    assert path.endswith("spiece.model")
    processor = sentencepiece.SentencePieceProcessor(model_file=path)
    assert processor.vocab_size() == 200
    assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (0, 1, 2, -1)
    assert [processor.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]


def test_train_sentencepiece_bpe(corpus_file, tmp_path):
    path = text.train_sentencepiece([corpus_file], 200, tmp_path, model_type="bpe")
    assert text.SentencePieceTokenizer.from_files(path).vocabulary_size == 200


@pytest.mark.parametrize("train", [text.train_wordpiece, text.train_sentencepiece])
def test_bad_corpus_raises(train, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        train([tmp_path / "missing.txt"], 100, tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no text"):
        train([empty], 100, tmp_path / "out")
    with pytest.raises(ValueError, match="No corpus files"):
        train([], 100, tmp_path / "out")


def test_bad_arguments_raise(corpus_file, tmp_path):
    with pytest.raises(ValueError, match="vocabulary_size"):
        text.train_wordpiece([corpus_file], 3, tmp_path)
    with pytest.raises(ValueError, match="model_type"):
        text.train_sentencepiece([corpus_file], 100, tmp_path, model_type="word-level")
    with pytest.raises(ValueError, match="--vocabulary-size"):
        text.train_sentencepiece([corpus_file], 100_000, tmp_path)


def test_vocab_command(corpus_file, tmp_path, capsys):
    assert vocab_command([str(corpus_file), "--vocabulary-size", "250", "--output-dir", str(tmp_path / "wp")]) == 0
    assert (tmp_path / "wp" / "vocab.txt").is_file()
    argv = [str(corpus_file), "--kind", "sentencepiece", "--vocabulary-size", "200", "--output-dir", str(tmp_path)]
    assert vocab_command(argv) == 0
    assert "spiece.model" in capsys.readouterr().out
    assert vocab_command([str(tmp_path / "nope.txt"), "--vocabulary-size", "50", "--output-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "omicron", "upsilon")


def _long_document(size=58_000, seed=0):
    """One line of `size` bytes or more (a whole document on one line), words built from GREEK."""
    rng = np.random.default_rng(seed)
    words = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(str(rng.choice(GREEK)) + str(rng.choice(["", "s", "ed", "ing"])))
    return " ".join(words)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_trains_on_a_document_longer_than_a_trainer_line(tmp_path, model_type):
    # sentencepiece skips lines over max_sentence_length (16,384 bytes): a 58 KB one-line file alone trained nothing
    # and the error blamed vocabulary_size; beside a small file, its words came out as <unk>.
    big = tmp_path / "big.txt"
    big.write_text(_long_document() + "\n", encoding="utf-8")
    small = tmp_path / "small.txt"
    small.write_text("\n".join(f"w{i} w{i + 1} w{i + 2}." for i in range(200)) + "\n", encoding="utf-8")
    sentence = _long_document(size=300, seed=1)
    for files, size in (([big, small], 60), ([big], 34)):
        model = text.train_sentencepiece(files, size, tmp_path / str(len(files)), model_type=model_type)
        processor = sentencepiece.SentencePieceProcessor(model_file=model)
        pieces = processor.encode(sentence, out_type=int)
        assert processor.unk_id() not in pieces, processor.encode(sentence, out_type=str)
    report = text.vocabulary.CorpusReport()
    text.train_sentencepiece([big, small], 60, tmp_path / "report", model_type=model_type, report=report)
    assert report.split_lines == 1 and report.lines > 201
    assert any("cut 1 lines" in message for message in report.messages())


def test_pieces_of_a_long_line_keep_every_word_and_fit():
    line = "ab cdé " * 3000 + "x" * 100 + " end"
    pieces = text.vocabulary._pieces(line, 64)
    assert all(len(piece.encode("utf-8")) <= 64 for piece in pieces)
    assert " ".join(pieces).split()[:6000] == line.split()[:6000]  # cut at spaces, nothing lost or reordered
    assert pieces[-2:] == ["x" * 64, "x" * 36 + " end"]  # a word longer than a piece is cut inside


@pytest.mark.parametrize("train", [text.train_wordpiece, text.train_sentencepiece])
def test_binary_corpus_file_is_refused_naming_it(train, corpus_file, tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"photo.jpg.*lines are not UTF-8 text.*convert it to UTF-8"):
        train([corpus_file, image], 200, tmp_path / "out")


def test_wordpiece_skips_and_counts_latin1_lines(corpus_file, tmp_path, capsys):
    # The tokenizers trainer raised a bare Exception ("stream did not contain valid UTF-8"): a traceback.
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(corpus_file.read_bytes() + "caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    report = text.vocabulary.CorpusReport()
    path = text.train_wordpiece([mixed], 300, tmp_path / "wp", report=report)
    assert open(path, encoding="utf-8").read().splitlines()[0] == "[PAD]"
    total = sum(1 for line in mixed.read_bytes().splitlines() if line.strip())
    assert report.messages() == [f"skipped 1 of {total} lines that are not UTF-8 text in {mixed}"]
    argv = [str(mixed), "--vocabulary-size", "300", "--output-dir", str(tmp_path / "cli")]
    assert vocab_command(argv) == 0
    assert f"kzoo vocab: skipped 1 of {total} lines that are not UTF-8 text in {mixed}" in capsys.readouterr().err
