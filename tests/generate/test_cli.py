"""`kzoo generate`: text in/out through a tokenizer, ids in/out, and usage errors (one saved model)."""

import json

import pytest

from kzoo import cli
from kzoo.text import WordPieceTokenizer

WORDS = "the cat sat on mat a dog ran in park sun is warm today we read book".split()


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory):
    """A WordPiece vocab.txt with exactly the 61 ids of the shared tiny GPT."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokens += [f"##{i}" for i in range(61 - len(tokens))]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def test_text_and_ids_match_the_library(tmp_path, capsys, gpt, vocab_txt):
    tokenizer = WordPieceTokenizer.from_files(vocab_txt)
    path = tmp_path / "tiny.keras"
    gpt.save(path)
    prompts = ["the cat", "a dog ran"]
    code = cli.main(["generate", str(path), "--tokenizer", vocab_txt, "--prompt", prompts[0], "--prompt",
                     prompts[1], "--max-new-tokens", "5", "--no-xla", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["prompt"] for row in printed] == prompts
    texts = [row["output"] for row in printed]
    assert all(isinstance(text, str) for text in texts)

    # Ids in, ids out: the same prompts as ids ([CLS] + words: causal text prompts get the
    # tokenizer's prefix and no end token) give the ids whose text was printed above.
    rows = [[2, *tokenizer.tokenize(p).numpy().tolist()] for p in prompts]
    assert cli.main(["generate", str(path), *[f"--ids={' '.join(map(str, r))}" for r in rows],
                     "--max-new-tokens", "5", "--no-xla"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ids = [[int(i) for i in line.split()] for line in lines]
    assert len(ids) == 2 and all(len(row) == 5 and all(0 <= i < 61 for i in row) for row in ids)
    assert texts == [tokenizer.detokenize(row).numpy().decode("utf-8") for row in ids]  # no stop id here

    # Errors the user can fix: one line, exit 2 (as every kzoo command).
    assert cli.main(["generate", str(path), "--ids", "5 6 7", "--strategy", "top_p", "--top-p", "1.5"]) == 2
    assert "top_p must lie in (0, 1], got 1.5" in capsys.readouterr().err
    assert cli.main(["generate", str(path), "--prompt", "hi"]) == 2
    assert "text prompts need --tokenizer" in capsys.readouterr().err
    assert cli.main(["generate", str(path), "--prompts-file", str(tmp_path / "missing.txt")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("kzoo generate: cannot read --prompts-file ") and error.count("\n") == 1


def test_parser_lists_the_options():
    parser = cli.build_parser()
    args = parser.parse_args(["generate", "m.keras", "--ids", "1,2", "--early-stopping", "never",
                              "--stop-token-ids", "3 4"])
    assert args.ids == [[1, 2]] and args.early_stopping == "never" and args.stop_token_ids == [3, 4]
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "m.keras", "--strategy", "nucleus"])
