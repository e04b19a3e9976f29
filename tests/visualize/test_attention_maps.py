"""Labelled attention maps: extraction from each family, the heatmap figure (labels, panels, masked cells), the
`kzoo attention` command (run folders and imported checkpoints, checked against transformers' own attentions)."""

import os

import numpy as np
import pytest

from kzoo import cli, models
from kzoo.text import WordPieceTokenizer
from kzoo.visualize import heatmap
from kzoo.visualize.attention import (
    CROSS,
    DECODER_SELF,
    ENCODER_SELF,
    SELF,
    AttentionMap,
    attention_maps,
    text_inputs,
    token_labels,
)

WORDS = "the cat sat on mat a dog ran in park sun is warm today we read book".split()
VOCABULARY = 61


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory):
    """A WordPiece vocab.txt with exactly the 61 ids of the tiny test models ([CLS] starts, [SEP] ends a text)."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokens += [f"##{i}" for i in range(VOCABULARY - len(tokens))]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(vocab_txt):
    return WordPieceTokenizer.from_files(vocab_txt)


@pytest.fixture(scope="module")
def gpt():
    return models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=VOCABULARY, dropout=0.0))


@pytest.fixture(scope="module")
def seq2seq():
    return models.Seq2SeqLM(models.from_preset("t5_test", vocabulary_size=VOCABULARY, dropout=0.0))


def _padded_gpt_map(gpt, tokenizer):
    ids = np.array([2, 5, 6, 7, 8, 0, 0])  # [CLS] the cat sat on, two pads
    return attention_maps(gpt.backbone, {"token_ids": ids, "padding_mask": ids > 0}, token_labels(tokenizer))


def test_causal_maps_are_labelled_and_masked(gpt, tokenizer):
    maps = _padded_gpt_map(gpt, tokenizer)
    assert [m.title for m in maps] == [f"{SELF}, layer {i}" for i in range(gpt.backbone.num_layers)]
    first = maps[0]
    assert first.query_tokens == first.key_tokens == ["[CLS]", "the", "cat", "sat", "on", "[PAD]", "[PAD]"]
    expected = np.tril(np.ones((7, 7), bool))
    expected[5:] = False
    expected[:, 5:] = False
    np.testing.assert_array_equal(first.allowed, expected)
    direct = gpt.backbone.attention_scores({"token_ids": np.array([[2, 5, 6, 7, 8, 0, 0]]),
                                            "padding_mask": np.array([[1, 1, 1, 1, 1, 0, 0]])})
    np.testing.assert_allclose(first.probabilities, np.asarray(direct[0])[0], atol=1e-6)
    assert np.allclose(first.probabilities.sum(-1)[:, :5], 1.0, atol=1e-5)


def test_seq2seq_gives_encoder_decoder_and_cross_attention(seq2seq, tokenizer):
    inputs = text_inputs(seq2seq, tokenizer, "the cat sat", target="a dog")
    assert inputs["encoder_token_ids"].tolist() == [[2, 5, 6, 7, 3]]  # [CLS] the cat sat [SEP]
    assert inputs["decoder_token_ids"].tolist() == [[0, 10, 11]]  # the start (pad) token, then the target
    maps = attention_maps(seq2seq.backbone, inputs, token_labels(tokenizer))
    encoder, decoder = seq2seq.backbone.num_encoder_layers, seq2seq.backbone.num_decoder_layers
    assert [m.kind for m in maps] == [ENCODER_SELF] * encoder + [DECODER_SELF] * decoder + [CROSS] * decoder
    cross = maps[-1]
    assert cross.query_tokens == ["[PAD]", "a", "dog"] and cross.key_tokens[0] == "[CLS]"
    assert cross.probabilities.shape == (seq2seq.backbone.num_heads, 3, 5) and cross.allowed.all()
    decoder_self = maps[encoder]
    np.testing.assert_array_equal(decoder_self.allowed, np.tril(np.ones((3, 3), bool)))
    # Without a target the decoder reads the model's own greedy output, cut at the end token.
    written = text_inputs(seq2seq, tokenizer, "the cat sat", max_new_tokens=4)["decoder_token_ids"]
    assert written[0, 0] == 0 and 1 <= written.shape[1] <= 5 and 3 not in written[0, 1:]


def test_bert_pair_inputs_and_bad_options(tokenizer, gpt):
    bert = models.from_preset("bert_test", vocabulary_size=VOCABULARY, dropout=0.0)
    inputs = text_inputs(bert, tokenizer, "the cat", pair="a dog ran")
    assert inputs["token_ids"].tolist() == [[2, 5, 6, 3, 10, 11, 12, 3]]
    assert inputs["segment_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    maps = attention_maps(bert, inputs, token_labels(tokenizer))
    assert maps[0].allowed.all()  # BERT attends both ways; no padding here
    with pytest.raises(ValueError, match="a text pair is a BERT input; this is a gpt model"):
        text_inputs(gpt, tokenizer, "the cat", pair="a dog")
    limit = gpt.backbone.max_sequence_length
    with pytest.raises(ValueError, match=f"is {limit + 1} tokens long with its special tokens; the model reads at "
                                         f"most {limit}: shorten it"):
        text_inputs(gpt, tokenizer, " ".join(["the"] * limit))  # + [CLS]
    with pytest.raises(ValueError, match="one example"):
        attention_maps(gpt.backbone, {"token_ids": np.ones((2, 3), int), "padding_mask": np.ones((2, 3), bool)})


def test_select_heads_and_window(gpt, tokenizer):
    first = _padded_gpt_map(gpt, tokenizer)[0]
    part = first.select(heads=[1], window=(1, 4))
    assert part.heads == [1] and part.query_tokens == part.key_tokens == ["the", "cat", "sat"]
    np.testing.assert_array_equal(part.probabilities[0], first.probabilities[1, 1:4, 1:4])
    assert part.query_positions == [1, 2, 3]
    with pytest.raises(ValueError, match="there is no head 7"):
        first.select(heads=[7])
    with pytest.raises(ValueError, match="starts after the last"):
        first.select(window=(9, 12))


def _cell_pixel(figure, axes, pixels, row, column):
    x, y = axes.transData.transform((column, row))
    return pixels[int(round(figure.bbox.height - y)), int(round(x))]


def test_heatmap_panels_labels_and_masked_cells(gpt, tokenizer):
    first = _padded_gpt_map(gpt, tokenizer)[0]
    figure = heatmap.layer_figure(first)
    head_axes = figure.kzoo_head_axes
    assert len(head_axes) == gpt.backbone.num_heads
    assert [a.get_title() for a in head_axes] == [f"head {h}" for h in range(gpt.backbone.num_heads)]
    assert figure.get_suptitle() == f"{SELF}, layer 0"
    left, bottom = head_axes[0], head_axes[-1]
    assert [t.get_text() for t in left.get_yticklabels()] == first.query_tokens
    assert [t.get_text() for t in bottom.get_xticklabels()] == first.key_tokens
    cells = head_axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(cells), ~first.allowed)  # masked, not zero
    # In the picture a masked cell is grey (the masked colour with darker grey hatch lines); an allowed cell takes a
    # viridis colour, never grey, not even for a small probability.
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)

    def is_masked_grey(pixel):
        return pixel.max() - pixel.min() <= 3 and 0x8c - 8 <= pixel.mean() <= 0xc8 + 8

    for row, column in [(0, 3), (1, 6), (6, 0)]:
        assert is_masked_grey(_cell_pixel(figure, head_axes[0], pixels, row, column)), (row, column)
    for row, column in [(0, 0), (4, 0), (4, 4)]:
        pixel = _cell_pixel(figure, head_axes[0], pixels, row, column)
        assert pixel.max() - pixel.min() > 20, (row, column, pixel)
    assert heatmap.layer_pixels(first).dtype == np.uint8
    assert heatmap.layer_png(first).startswith(b"\x89PNG")


def test_long_sequences_label_every_nth_token():
    tokens = [f"t{i}" for i in range(100)]
    probabilities = np.full((1, 100, 100), 0.01, np.float32)
    long_map = AttentionMap(SELF, 0, probabilities, tokens, tokens, np.ones((100, 100), bool))
    figure = heatmap.layer_figure(long_map, max_labels=40)
    labels = [t.get_text() for t in figure.kzoo_head_axes[0].get_xticklabels()]
    assert labels == tokens[::3] and "every 3rd token labelled" in figure.get_suptitle()
    assert heatmap.label_step(40, 40) == 1
    with pytest.raises(ValueError, match="max_labels"):
        heatmap.label_step(10, 0)


def test_command_writes_heatmaps_and_page(tmp_path, capsys, gpt, vocab_txt):
    from kzoo.recipes.outputs import save_model_and_tokenizer

    run = tmp_path / "run"
    run.mkdir()
    save_model_and_tokenizer(str(run), gpt, {"vocab.txt": vocab_txt})
    out = tmp_path / "maps"
    assert cli.main(["attention", str(run), "--text", "the cat sat on", "--layers", "-1", "--heads", "1",
                     "--output", str(out)]) == 0
    assert "1 heatmap (1 head each)" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["attention.html", "self_attention_layer_1.png"]
    page = (out / "attention.html").read_text(encoding="utf-8")
    assert "sat" in page and "data:image/png;base64," in page
    # Errors the user can fix: one line, exit 2.
    assert cli.main(["attention", str(run), "--text", "the cat", "--layers", "5", "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert "self-attention has layers 0-1" in error and error.count("\n") == 1
    assert cli.main(["attention", str(run), "--text", "the", "--pair", "cat", "--output", str(out)]) == 2
    assert "a text pair is a BERT input" in capsys.readouterr().err
    assert cli.main(["attention", str(tmp_path / "nowhere"), "--text", "x", "--output", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_command_on_a_hugging_face_checkpoint_matches_transformers(tmp_path, capsys):
    """`kzoo attention` on a HF BERT directory imports it through kzoo.convert; its maps are transformers' own
    `output_attentions`, token for token."""
    pytest.importorskip("transformers")
    import torch

    from kzoo.recipes.outputs import load_run
    from tests.convert.hf_fixtures import make_bert

    directory, reference = make_bert(tmp_path)
    reference.set_attn_implementation("eager")  # SDPA attention returns no probabilities
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    vocabulary += [f"##{i}" for i in range(101 - len(vocabulary))]
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as file:
        file.write("\n".join(vocabulary) + "\n")
    out = tmp_path / "maps"
    assert cli.main(["attention", directory, "--text", "the dog ran", "--pair", "we read", "--output",
                     str(out)]) == 0
    assert len([name for name in os.listdir(out) if name.endswith(".png")]) == 2
    model, tokenizer, _, _ = load_run(directory, checkpoints=True)
    inputs = text_inputs(model, tokenizer, "the dog ran", pair="we read")
    ours = attention_maps(model.backbone, inputs, token_labels(tokenizer))
    with torch.no_grad():
        theirs = reference.bert(input_ids=torch.tensor(inputs["token_ids"], dtype=torch.long),
                                token_type_ids=torch.tensor(inputs["segment_ids"], dtype=torch.long),
                                output_attentions=True).attentions
    assert ours[0].query_tokens == ["[CLS]", "the", "dog", "ran", "[SEP]", "we", "read", "[SEP]"]
    assert len(theirs) == len(ours) == 2
    for layer, expected in enumerate(theirs):  # measured: 2.7e-7
        np.testing.assert_allclose(ours[layer].probabilities, expected[0].numpy(), atol=2e-5)
