"""Imported Hugging Face checkpoints reproduce `transformers` outputs (fp32, atol 1e-4).

Each reference is a randomly initialised `transformers` model of small, odd sizes
saved locally (tests/convert/hf_fixtures.py); nothing is downloaded. Only real
(non-padding) positions are compared: what a model computes at padding is undefined.
"""

import keras
import numpy as np
import pytest
import torch

from kzoo import models
from kzoo.convert.huggingface import from_huggingface
from tests.convert import hf_fixtures
from tests.harness import to_numpy

PARITY_ATOL = 1e-4


def _close(kzoo_value, torch_value, mask=None):
    got = to_numpy(kzoo_value)
    want = torch_value.detach().numpy()
    if mask is not None:
        keep = mask.astype(bool)
        got, want = got[keep], want[keep]
    difference = float(np.max(np.abs(got - want)))
    assert difference <= PARITY_ATOL, f"max abs difference {difference:.2e} > {PARITY_ATOL}"
    return difference


@pytest.fixture
def initial_values_drawn(monkeypatch):
    """The shapes for which a Keras initializer computed actual values (not a symbolic placeholder) from now on.

    An import builds its model inside `weights_to_be_overwritten`, where each weight is created by its first
    assignment from the checkpoint's value: had an initializer filled one first, that buffer was a second copy of
    the weight at the peak (tools/bench_import.py). While the functional graph is wired, initializers run only
    symbolically (a TensorFlow graph tensor, a JAX tracer: NumPy cannot read those).
    """
    drawn = []
    for initializer in vars(keras.initializers).values():
        if isinstance(initializer, type) and issubclass(initializer, keras.initializers.Initializer):
            def spy(self, shape, dtype=None, _call=initializer.__call__, **kwargs):
                value = _call(self, shape, dtype=dtype, **kwargs)
                try:
                    np.asarray(value)
                except Exception:  # symbolic
                    return value
                drawn.append((type(self).__name__, tuple(shape)))
                return value

            monkeypatch.setattr(initializer, "__call__", spy)
    return drawn


def test_bert_pretraining_parity(tmp_path, initial_values_drawn):
    directory, reference = hf_fixtures.make_bert(tmp_path)
    imported = from_huggingface(directory)
    assert not initial_values_drawn
    assert isinstance(imported.model, models.BertPretrainer)
    ids, mask = hf_fixtures.random_ids(3, 11, 101, seed=1, pad_id=0)
    segments = (np.arange(11)[None] >= 5).repeat(3, 0).astype("int32") * mask
    positions = np.array([[1, 4, 7], [0, 2, 3], [5, 6, 8]], "int32")
    with torch.no_grad():
        out = reference(
            input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(segments, dtype=torch.long), output_hidden_states=True,
        )
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}
    features = imported.backbone(inputs)
    _close(features["sequence_output"], out.hidden_states[-1], mask)
    result = imported.model({**inputs, "mask_positions": positions})
    gathered_mask = np.take_along_axis(mask, positions, axis=1)
    want_mlm = torch.gather(
        out.prediction_logits, 1, torch.tensor(positions, dtype=torch.long)[:, :, None].expand(-1, -1, 101)
    )
    _close(result["mlm_logits"], want_mlm, gathered_mask)
    _close(result["nsp_logits"], out.seq_relationship_logits)


def test_gpt2_parity(tmp_path, initial_values_drawn):
    directory, reference = hf_fixtures.make_gpt2(tmp_path)
    imported = from_huggingface(directory, family="gpt")
    assert not initial_values_drawn
    vocab = imported.hf_config["vocab_size"]
    ids, mask = hf_fixtures.random_ids(3, 13, vocab, seed=2)
    with torch.no_grad():
        out = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                        output_hidden_states=True)
    inputs = {"token_ids": ids, "padding_mask": mask}
    _close(imported.backbone(inputs)["sequence_output"], out.hidden_states[-1], mask)
    _close(imported.model(inputs), out.logits, mask)


@pytest.mark.parametrize("design", ["t5_v1_0", "t5_v1_1", "bart"])
def test_seq2seq_parity(tmp_path, design, initial_values_drawn):
    if design == "bart":
        directory, reference = hf_fixtures.make_bart(tmp_path)
    else:
        directory, reference = hf_fixtures.make_t5(tmp_path, gated=design == "t5_v1_1")
    imported = from_huggingface(directory, family="seq2seq")
    assert not initial_values_drawn
    vocab = imported.hf_config["vocab_size"]
    source, source_mask = hf_fixtures.random_ids(3, 12, vocab, seed=3, pad_id=1 if design == "bart" else 0)
    target, target_mask = hf_fixtures.random_ids(3, 7, vocab, seed=4, pad_id=1 if design == "bart" else 0)
    with torch.no_grad():
        out = reference(
            input_ids=torch.tensor(source, dtype=torch.long), attention_mask=torch.tensor(source_mask),
            decoder_input_ids=torch.tensor(target, dtype=torch.long),
            decoder_attention_mask=torch.tensor(target_mask), output_hidden_states=True,
        )
    inputs = {"encoder_token_ids": source, "encoder_padding_mask": source_mask,
              "decoder_token_ids": target, "decoder_padding_mask": target_mask}
    features = imported.backbone(inputs)
    _close(features["encoder_sequence_output"], out.encoder_last_hidden_state, source_mask)
    _close(imported.model(inputs), out.logits, target_mask)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    directory, _ = hf_fixtures.make_gpt2(tmp_path)
    with pytest.raises(ValueError, match=r"holds a 'gpt2' checkpoint \(gpt family\), not a 'bert' model"):
        from_huggingface(directory, family="bert")


# --- a part the file lacks is not built (never left random) -----------------------------------


def _imported_twice(directory):
    """Two imports of `directory` under different Keras seeds: a part left at its random initial value differs."""
    keras.utils.set_random_seed(1)
    first = from_huggingface(directory)
    keras.utils.set_random_seed(2)
    second = from_huggingface(directory)
    for one, other in zip(first.model.weights, second.model.weights, strict=True):
        assert one.path == other.path
        np.testing.assert_array_equal(to_numpy(one), to_numpy(other), err_msg=one.path)
    return first


def test_bert_masked_lm_file_imports_without_a_next_sentence_head(tmp_path):
    directory, reference = hf_fixtures.make_bert(tmp_path, head="masked_lm")
    imported = _imported_twice(directory)
    model = imported.model
    assert isinstance(model, models.BertPretrainer) and not model.next_sentence_prediction
    assert model.next_sentence_head is None and model.backbone.pooler is None  # BertForMaskedLM has neither
    ids, mask = hf_fixtures.random_ids(2, 9, 101, seed=5, pad_id=0)
    segments = np.zeros_like(ids)
    positions = np.array([[0, 3, 8], [1, 2, 5]], "int32")
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                           token_type_ids=torch.tensor(segments, dtype=torch.long)).logits
    result = model({"token_ids": ids, "segment_ids": segments, "padding_mask": mask, "mask_positions": positions})
    assert set(result) == {"mlm_logits"}
    want = torch.gather(logits, 1, torch.tensor(positions, dtype=torch.long)[:, :, None].expand(-1, -1, 101))
    _close(result["mlm_logits"], want, np.take_along_axis(mask, positions, axis=1))


def test_bert_file_without_pooler_imports_a_backbone_without_pooler(tmp_path):
    directory, reference = hf_fixtures.make_bert(tmp_path, head="no_pooler")
    imported = _imported_twice(directory)
    backbone = imported.model
    assert isinstance(backbone, models.BertBackbone) and backbone.pooler is None
    ids, mask = hf_fixtures.random_ids(2, 9, 101, seed=6, pad_id=0)
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
    outputs = backbone(inputs)
    assert set(outputs) == {"sequence_output"}
    with torch.no_grad():
        want = reference(input_ids=torch.tensor(ids, dtype=torch.long),
                         attention_mask=torch.tensor(mask)).last_hidden_state
    _close(outputs["sequence_output"], want, mask)
    # A classifier reads [CLS] through a new tanh layer of its own head; the next-sentence head needs the pooler.
    classifier = models.BertClassifier(backbone, num_classes=2)
    assert classifier.classification_head.intermediate is not None
    with pytest.raises(ValueError, match=r"BertPretrainer's next-sentence head reads the pooled \[CLS\] output, but "
                                         r"this BertBackbone has no pooler \(use_pooler=False"):
        models.BertPretrainer(backbone)


def test_a_built_weight_the_checkpoint_does_not_fill_is_an_error(tmp_path, monkeypatch):
    """The general guard: a converter that builds a part and never assigns it fails, listing the weight."""
    from kzoo.convert import hf_gpt2

    directory, _ = hf_fixtures.make_gpt2(tmp_path)
    real_norm = hf_gpt2._assign.norm

    def skip_final_norm(layer, reader, name, **kwargs):
        if name.endswith("ln_f"):  # forget the final norm, as a converter bug would
            reader.ignore(lambda tensor: tensor.startswith(name))
            return
        real_norm(layer, reader, name, **kwargs)

    monkeypatch.setattr(hf_gpt2._assign, "norm", skip_final_norm)
    with pytest.raises(ValueError, match=r"(?s)2 of \d+ weights of the imported GPTCausalLM received no value from the "
                                         r"checkpoint .*final_norm/scale"):
        from_huggingface(directory)
