"""Vocabulary files trained once per session on generated text (no downloads), and kzoo tokenizers over them."""

import pytest

from kzoo import text
from tests.text.sentences import corpus_lines

WORDPIECE_SIZE = 800
BPE_SIZE = 1000
SENTENCEPIECE_SIZE = 300


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def vocab_files(tmp_path_factory, corpus_file):
    """dict name -> path: uncased/cased vocab.txt, GPT-2 vocab.json + merges.txt, T5 spiece.model."""
    import tokenizers

    root = tmp_path_factory.mktemp("vocab")
    files = {
        "uncased": text.train_wordpiece([corpus_file], WORDPIECE_SIZE, root / "uncased", lowercase=True),
        "cased": text.train_wordpiece([corpus_file], WORDPIECE_SIZE, root / "cased", lowercase=False),
        "spiece": text.train_sentencepiece([corpus_file], SENTENCEPIECE_SIZE, root / "t5"),
    }
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train([str(corpus_file)], vocab_size=BPE_SIZE, special_tokens=["<|endoftext|>"], show_progress=False)
    (root / "gpt2").mkdir()
    files["vocab_json"], files["merges"] = bpe.save_model(str(root / "gpt2"))
    return files


@pytest.fixture(scope="session")
def bert_uncased(vocab_files):
    return text.WordPieceTokenizer.from_files(vocab_files["uncased"], lowercase=True)


@pytest.fixture(scope="session")
def bert_cased(vocab_files):
    return text.WordPieceTokenizer.from_files(vocab_files["cased"], lowercase=False)


@pytest.fixture(scope="session")
def gpt2(vocab_files):
    return text.BytePairTokenizer.from_files(vocab_files["vocab_json"], vocab_files["merges"])


@pytest.fixture(scope="session")
def t5(vocab_files):
    return text.SentencePieceTokenizer.from_files(vocab_files["spiece"])
