"""Smoke runs of the seq2seq translation/summarization and GPT fine-tuning recipes.

Each recipe runs through its `main(argv)` for a step or two on tiny settings (the
`*_test` presets, small vocabularies, short sequences, two eval batches) with its
offline default data, and must leave a model, its tokenizer files and a sane
`result.json` in the output directory.
"""

import json
import math
import os

import keras
import pytest

from recipes import gpt_finetune, gpt_pretrain, seq2seq_summarize, seq2seq_translate


QUICK = ["--train.steps=2", "--train.batch_size=8", "--train.warmup_steps=1", "--train.eval_steps=2",
         "--train.verbose=0"]


def run(main, output_dir, *arguments):
    main([*QUICK, f"--train.output_dir={output_dir}", *arguments])
    with open(os.path.join(output_dir, "result.json"), encoding="utf-8") as file:
        result = json.load(file)
    assert result["steps"] == 2
    assert os.path.isfile(os.path.join(output_dir, "model.keras"))
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["eval"]["loss"])
    return result


def test_translate_smoke(tmp_path):
    result = run(seq2seq_translate.main, tmp_path / "out", "--model.preset=t5_test", "--data.vocabulary_size=64",
                 "--data.encoder_sequence_length=16", "--data.decoder_sequence_length=16", "--data.decode_examples=8")
    assert 0.0 <= result["eval"]["bleu"] <= 1.0
    assert 0.0 <= result["eval"]["accuracy"] <= 1.0
    assert os.path.isfile(tmp_path / "out" / "tokenizer" / "spiece.model")


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="summarization differs from translation in its data and ROUGE, which do "
                     "not depend on the backend; the JAX run trains and decodes seq2seq in test_translate_smoke")
def test_summarize_smoke(tmp_path):
    result = run(seq2seq_summarize.main, tmp_path / "out", "--model.preset=t5_test", "--data.vocabulary_size=64",
                 "--data.encoder_sequence_length=48", "--data.decoder_sequence_length=12", "--data.decode_examples=8")
    assert {"rouge1", "rouge2", "rougeL"} <= set(result["eval"])
    assert all(0.0 <= result["eval"][name] <= 1.0 for name in ("rouge1", "rouge2", "rougeL"))


def _byte_level_bpe(directory):
    """A ~300-token GPT-2 style vocabulary (`vocab.json`, `merges.txt`) trained on a few sentences."""
    tokenizers = pytest.importorskip("tokenizers")
    directory.mkdir()
    corpus = directory / "corpus.txt"
    corpus.write_text("The Rovers played United in Lisbon on Saturday.\nThe weather was cold and windy.\n" * 20)
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train([str(corpus)], vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(directory))
    corpus.unlink()
    return bpe.get_vocab_size(), bpe.token_to_id("<|endoftext|>")


def _tiny_hf_gpt2(directory):
    """A random Hugging Face GPT-2 (`save_pretrained`) with its tokenizer files."""
    transformers = pytest.importorskip("transformers")
    size, end = _byte_level_bpe(directory)
    config = transformers.GPT2Config(vocab_size=size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=end, eos_token_id=end)
    transformers.GPT2LMHeadModel(config).save_pretrained(str(directory))
    return directory


def _tiny_keras_hub_gpt2(directory):
    """A random keras-hub GPT-2 preset (`save_to_preset`) with its tokenizer."""
    keras_hub = pytest.importorskip("keras_hub")
    files = directory.parent / "bpe"
    size, _ = _byte_level_bpe(files)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=size, num_layers=2, num_heads=2, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=64)
    backbone.save_to_preset(str(directory))
    keras_hub.models.GPT2Tokenizer(vocabulary=str(files / "vocab.json"),
                                   merges=str(files / "merges.txt")).save_to_preset(str(directory))
    return directory


FINETUNE = ["--data.sequence_length=16", "--data.prompt_words=3", "--data.sample_tokens=4"]


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="reading a keras-hub preset does not depend on the backend; the JAX run "
                     "fine-tunes from a Hugging Face directory and a kzoo file below")
def test_finetune_from_keras_hub_preset(tmp_path):
    checkpoint = _tiny_keras_hub_gpt2(tmp_path / "preset")
    result = run(gpt_finetune.main, tmp_path / "out", f"--model.checkpoint={checkpoint}", *FINETUNE)
    assert math.isfinite(result["eval"]["base_perplexity"]) and math.isfinite(result["eval"]["perplexity"])
    assert {"vocabulary.json", "merges.txt"} <= set(os.listdir(tmp_path / "out" / "tokenizer"))


@pytest.mark.slow
def test_finetune_from_huggingface(tmp_path):
    checkpoint = _tiny_hf_gpt2(tmp_path / "gpt2")
    result = run(gpt_finetune.main, tmp_path / "out", f"--model.checkpoint={checkpoint}", *FINETUNE)
    evaluation = result["eval"]
    assert evaluation["perplexity"] == pytest.approx(math.exp(evaluation["loss"]), rel=1e-6)
    assert evaluation["base_perplexity"] == pytest.approx(math.exp(evaluation["base_loss"]), rel=1e-6)
    # A random model over ~300 tokens starts near log(300); two small steps move it only a little.
    assert abs(evaluation["base_loss"] - evaluation["loss"]) < 1.0
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(tmp_path / "out" / "tokenizer"))
    reloaded = keras.saving.load_model(tmp_path / "out" / "model.keras", compile=False)
    assert isinstance(reloaded, gpt_finetune.models.GPTCausalLM)


@pytest.mark.slow
def test_finetune_from_kzoo_keras_file(tmp_path):
    pretrained = tmp_path / "pretrain"
    # Pretrained with the fused loss: the recipe's Trainer, eval metrics and model.keras all go through it, and the
    # fine-tuning run reloads the model with fused_loss in its config.
    pretrain = run(gpt_pretrain.main, pretrained, "--model.preset=gpt_test", "--data.vocabulary_size=256",
                   "--data.sequence_length=16", "--model.fused_loss")
    assert 0.0 <= pretrain["eval"]["accuracy"] <= 1.0
    assert keras.saving.load_model(pretrained / "model.keras", compile=False).fused_loss
    result = run(gpt_finetune.main, tmp_path / "out", f"--model.checkpoint={pretrained / 'model.keras'}", *FINETUNE)
    assert math.isfinite(result["eval"]["base_perplexity"]) and math.isfinite(result["eval"]["perplexity"])
    assert os.listdir(tmp_path / "out" / "tokenizer") == ["spiece.model"]


def test_finetune_without_checkpoint_exits_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no runs/gpt_pretrain/model.keras here
    with pytest.raises(SystemExit) as exit_info:
        gpt_finetune.main([*QUICK])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "gpt_pretrain" in message and "--model.checkpoint" in message
    assert not os.path.exists(tmp_path / "runs" / "gpt_finetune" / "model.keras")
