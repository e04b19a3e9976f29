"""Export to Hugging Face (`kzoo.convert.to_huggingface`): a checkpoint imported with `from_huggingface` and written
back has exactly the tensors of the original file, `transformers` loads the result with no missing, unexpected or
mismatched weight, and its outputs match kzoo's (fp32, atol 1e-4, real positions only).

The references are the tiny random checkpoints of tests/convert/{hf,bert,llama,seq2seq}_fixtures.py; nothing is
downloaded.
"""

import json
import os

import keras
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers

from kzoo import models
from kzoo.convert import from_huggingface, to_huggingface
from tests.convert import bert_fixtures, hf_fixtures, llama_fixtures, seq2seq_fixtures
from tests.harness import to_numpy

PARITY_ATOL = 1e-4

# design -> (builder(tmp_path) -> (directory, model), family of the inputs, pad id)
DESIGNS = {
    "bert_pretraining": (hf_fixtures.make_bert, "bert", 0),
    "bert_no_pooler": (lambda tmp: hf_fixtures.make_bert(tmp, head="no_pooler"), "bert", 0),
    "roberta_masked_lm": (bert_fixtures.make_roberta, "bert", 1),
    "gpt2": (hf_fixtures.make_gpt2, "decoder", 0),
    "llama_llama3_biases": (lambda tmp: llama_fixtures.make_llama(tmp, rope_scaling="llama3", biases=True),
                            "decoder", 0),
    "qwen2": (llama_fixtures.make_qwen2, "decoder", 0),
    "mistral": (llama_fixtures.make_mistral, "decoder", 0),
    "t5_v1_0": (hf_fixtures.make_t5, "seq2seq", 0),
    "t5_v1_1": (lambda tmp: hf_fixtures.make_t5(tmp, gated=True), "seq2seq", 0),
    "marian": (seq2seq_fixtures.make_marian, "seq2seq", seq2seq_fixtures.MARIAN_PAD),
    "mbart": (seq2seq_fixtures.make_mbart, "seq2seq", 1),
    "bart_logits_bias": (lambda tmp: _with_logits_bias(*hf_fixtures.make_bart(tmp)), "seq2seq", 1),
}


# No fixture ships tokenizer files; Marian cannot be built without its pad id, so it is given.
SPECIAL_TOKEN_IDS = {"marian": {"pad": seq2seq_fixtures.MARIAN_PAD, "eos": 0}}


def _with_logits_bias(directory, model):
    """The BART fixture with a non-zero `final_logits_bias` (as Marian checkpoints have): kzoo imports it as
    `Seq2SeqLM(logits_bias=True)` and must write it back."""
    path = os.path.join(directory, "model.safetensors")
    tensors = safetensors.numpy.load_file(path)
    tensors["final_logits_bias"] = np.random.default_rng(5).normal(size=tensors["final_logits_bias"].shape)
    safetensors.numpy.save_file({k: v.astype("float32") for k, v in tensors.items()}, path, metadata={"format": "pt"})
    return directory, model


def _load_transformers(result):
    """The exported directory through `from_pretrained`, asserting transformers found every weight it expects."""
    model_class = getattr(transformers, result.architecture)
    options = {"add_pooling_layer": False} if any("without a pooler" in note for note in result.notes) else {}
    model, info = model_class.from_pretrained(result.directory, output_loading_info=True, **options)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info[kind], f"{kind}: {info[kind]}"
    return model.eval()


def _max_difference(kzoo_value, torch_value, mask):
    keep = mask.astype(bool)
    got, want = to_numpy(kzoo_value)[keep], torch_value.detach().numpy()[keep]
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)))


def _long(array):
    return torch.tensor(array, dtype=torch.long)


def _compare(family, kzoo_model, hf_model, vocabulary, pad_id):
    """Max abs difference between kzoo's and transformers' outputs on right-padded random inputs."""
    if family == "seq2seq":
        source, source_mask = hf_fixtures.random_ids(3, 10, vocabulary, seed=3, pad_id=pad_id)
        target, target_mask = hf_fixtures.random_ids(3, 7, vocabulary, seed=4, pad_id=pad_id)
        with torch.no_grad():
            want = hf_model(input_ids=_long(source), attention_mask=torch.tensor(source_mask),
                            decoder_input_ids=_long(target), decoder_attention_mask=torch.tensor(target_mask)).logits
        got = kzoo_model({"encoder_token_ids": source, "encoder_padding_mask": source_mask,
                          "decoder_token_ids": target, "decoder_padding_mask": target_mask})
        return _max_difference(got, want, target_mask)
    ids, mask = hf_fixtures.random_ids(3, 11, vocabulary, seed=2, pad_id=pad_id)
    if family == "decoder":
        with torch.no_grad():
            want = hf_model(input_ids=_long(ids), attention_mask=torch.tensor(mask)).logits
        return _max_difference(kzoo_model({"token_ids": ids, "padding_mask": mask}), want, mask)
    segments = np.zeros_like(ids)
    with torch.no_grad():
        out = hf_model(input_ids=_long(ids), attention_mask=torch.tensor(mask), token_type_ids=_long(segments))
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}
    if isinstance(kzoo_model, models.BertBackbone):
        return _max_difference(kzoo_model(inputs)["sequence_output"], out.last_hidden_state, mask)
    positions = np.tile(np.arange(ids.shape[1], dtype="int32"), (ids.shape[0], 1))  # every position
    result = kzoo_model({**inputs, "mask_positions": positions})
    logits = getattr(out, "prediction_logits", None)
    difference = _max_difference(result["mlm_logits"], out.logits if logits is None else logits, mask)
    if "nsp_logits" in result:
        difference = max(difference, _max_difference(result["nsp_logits"], out.seq_relationship_logits,
                                                      np.ones(ids.shape[0])))
    return difference


# The export reads variables through `keras.ops` (the one backend-dependent step): one design also runs under JAX;
# the rest are mapping checks, run under TensorFlow only (the CI budget).
BOTH_BACKENDS = ("llama_llama3_biases",)
TENSORFLOW_ONLY = pytest.mark.backend("tensorflow", reason="a mapping check; the export's backend step runs in "
                                                         f"{BOTH_BACKENDS} under every backend")


@pytest.mark.parametrize("design", [
    pytest.param(design, marks=() if design in BOTH_BACKENDS else TENSORFLOW_ONLY) for design in sorted(DESIGNS)
])
def test_round_trip_is_weight_identical_and_transformers_matches_kzoo(tmp_path, design):
    builder, family, pad_id = DESIGNS[design]
    directory, reference = builder(tmp_path)
    imported = from_huggingface(directory)
    result = to_huggingface(imported.model, tmp_path / "exported", special_token_ids=SPECIAL_TOKEN_IDS.get(design))
    assert result.architecture == type(reference).__name__ and result.model_type == reference.config.model_type
    original = safetensors.numpy.load_file(os.path.join(directory, "model.safetensors"))
    written = safetensors.numpy.load_file(os.path.join(result.directory, "model.safetensors"))
    assert sorted(written) == sorted(original)
    for name, tensor in original.items():
        assert written[name].dtype == tensor.dtype and written[name].shape == tensor.shape, name
        np.testing.assert_array_equal(written[name], tensor, err_msg=name)
    assert result.num_tensors == len(original)
    config = json.load(open(os.path.join(result.directory, "config.json"), encoding="utf-8"))
    assert config["architectures"] == [result.architecture] and config["torch_dtype"] == "float32"
    if design == "marian":
        assert config["pad_token_id"] == config["decoder_start_token_id"] == seq2seq_fixtures.MARIAN_PAD
    hf_model = _load_transformers(result)
    difference = _compare(family, imported.model, hf_model, imported.backbone.vocabulary_size, pad_id)
    assert difference <= PARITY_ATOL, f"max abs difference {difference:.2e} > {PARITY_ATOL}"


# --- kzoo-built models and their heads ----------------------------------------------------------------------------


def _tiny_bert(**overrides):
    keras.utils.set_random_seed(7)
    return models.BertBackbone(**{**dict(vocabulary_size=53, num_layers=1, num_heads=3, hidden_dim=15,
                                         intermediate_dim=23, max_sequence_length=20), **overrides})


@TENSORFLOW_ONLY
def test_fine_tuned_berts_export_their_heads(tmp_path):
    """BertClassifier -> BertForSequenceClassification (with the labels), or RobertaForSequenceClassification on a
    RoBERTa backbone without pooler; BertTokenClassifier -> BertForTokenClassification and BertSpanQA ->
    BertForQuestionAnswering (both without the pooler)."""
    backbone = _tiny_bert()
    roberta = _tiny_bert(position_offset=2, num_segments=1, use_pooler=False)
    tasks = {"classifier": models.BertClassifier(backbone, num_classes=3),
             "token_classifier": models.BertTokenClassifier(backbone, num_classes=4),
             "span_qa": models.BertSpanQA(backbone),
             "roberta_classifier": models.BertClassifier(roberta, num_classes=2)}
    for task, model in tasks.items():
        ids, mask = hf_fixtures.random_ids(2, 9, 53, seed=8, pad_id=1 if task.startswith("roberta") else 0)
        inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
        result = to_huggingface(model, tmp_path / task, labels=["neg", "neu", "pos"] if task == "classifier" else None)
        hf_model = _load_transformers(result)
        with torch.no_grad():
            out = hf_model(input_ids=_long(ids), attention_mask=torch.tensor(mask))
        got = model(inputs)
        if task.endswith("classifier") and task != "token_classifier":
            assert result.architecture == ("RobertaForSequenceClassification" if task.startswith("roberta")
                                           else "BertForSequenceClassification")
            difference = _max_difference(got, out.logits, np.ones(2))
        elif task == "token_classifier":
            assert any("pooler" in note for note in result.notes)  # BertForTokenClassification has none
            difference = _max_difference(got, out.logits, mask)
        else:
            difference = max(_max_difference(got["start_logits"], out.start_logits, mask),
                             _max_difference(got["end_logits"], out.end_logits, mask))
        assert difference <= PARITY_ATOL, f"{task}: max abs difference {difference:.2e} > {PARITY_ATOL}"
    assert hf_model.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # no labels given
    assert json.load(open(tmp_path / "classifier" / "config.json"))["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}


REFUSED = [  # (model builder, the one-line reason)
    (lambda: models.GPTCausalLM(models.GPTBackbone(50, 1, 2, 8, 12, position_embedding="rotary")),
     "position_embedding='rotary' in a GPT-2-style block has no Hugging Face equivalent"),
    (lambda: models.GPTCausalLM(models.GPTBackbone(50, 1, 2, 8, 12, pad_vocabulary_to_multiple_of=16)),
     "pad_vocabulary_to_multiple_of=16 has no Hugging Face GPT-2 equivalent"),
    (lambda: models.GPTBackbone(50, 1, 2, 8, 12, position_embedding="rotary", norm_type="rms",
                                gated_feed_forward=True, activation="silu", attention_bias=False, rotary_dim=2),
     "rotary_dim=2 rotates part of each head"),
    (lambda: models.GPTBackbone(50, 1, 2, 8, 12, position_embedding="rotary", norm_type="rms",
                                gated_feed_forward=True, activation="silu", attention_bias=False,
                                attention_output_bias=True),
     "attention_output_bias=True with attention_bias=False has no Llama-style equivalent"),
    (lambda: models.Seq2SeqLM(models.Seq2SeqBackbone(50, 1, 1, 2, 8, 12)),  # the original Transformer
     "sinusoidal_layout='interleaved' has no Hugging Face Marian (sinusoidal BART) equivalent"),
    (lambda: models.Seq2SeqLM(models.Seq2SeqBackbone(50, 1, 1, 2, 8, 12, sinusoidal_layout="split",
                                                     norm_epsilon=1e-5)),  # Marian-style, no tokenizer given
     "MarianMTModel needs the pad id (pad_token_id): pass the model's tokenizer files, or special_token_ids"),
    (lambda: models.BertBackbone(50, 1, 2, 8, 12, num_segments=0),
     "num_segments=0 (DistilBERT's embeddings) has no BERT/RoBERTa equivalent"),
]


@pytest.mark.backend("tensorflow", reason="config checks; no numerics")
def test_a_model_no_transformers_architecture_represents_is_refused(tmp_path):
    for build, message in REFUSED:
        with pytest.raises(ValueError) as error:
            to_huggingface(build(), tmp_path / "out")
        assert message in str(error.value) and "\n" not in str(error.value)
        assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.backend("tensorflow", reason="command-line and file checks")
def test_cli_exports_a_run_directory_with_its_tokenizer(tmp_path, capsys):
    from kzoo import cli
    from kzoo.recipes.outputs import save_model_and_tokenizer

    directory, _ = hf_fixtures.make_bert(tmp_path)
    vocabulary = tmp_path / "vocab.txt"  # 101 tokens, [PAD] deliberately not at id 0
    vocabulary.write_text("\n".join(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
                                     + [f"w{index}" for index in range(96)]) + "\n")
    run = tmp_path / "run"
    run.mkdir()
    save_model_and_tokenizer(str(run), from_huggingface(directory).model, {"vocab.txt": str(vocabulary)})
    out = tmp_path / "hf"
    capsys.readouterr()
    assert cli.main(["convert", "--to", "huggingface", str(run), str(out)]) == 0
    assert "-> BertForPreTraining (bert, " in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "vocab.txt"]
    config = json.load(open(out / "config.json", encoding="utf-8"))
    assert config["pad_token_id"] == 3 and config["model_type"] == "bert"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.pad_token_id == 3 and tokenizer("w5 w7")["input_ids"] == [1, 10, 12, 2]
    refused = tmp_path / "padded.keras"
    models.GPTCausalLM(models.GPTBackbone(50, 1, 2, 8, 12, pad_vocabulary_to_multiple_of=16)).save(refused)
    for arguments, message in [
        ([str(run)], "`--to huggingface` needs OUT_DIR"),
        ([str(tmp_path / "missing"), str(out)], "is neither a run directory nor a .keras file"),
        ([str(refused), str(out)], "pad_vocabulary_to_multiple_of=16 has no Hugging Face GPT-2 equivalent"),
    ]:
        assert cli.main(["convert", "--to", "huggingface", *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("kzoo convert: ") and message in error and error.count("\n") == 1, error
