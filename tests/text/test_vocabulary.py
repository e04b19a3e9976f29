"""Vocabulary training: the files load in kzoo and in the reference libraries; bad corpora fail clearly."""

import pytest
import sentencepiece

from kzoo import text
from kzoo.text.vocabulary import vocab_command


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
    assert vocab_command([str(tmp_path / "nope.txt"), "--vocabulary-size", "50", "--output-dir", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
