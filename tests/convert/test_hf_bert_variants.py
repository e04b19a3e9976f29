"""Imported RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA checkpoints reproduce `transformers` (fp32, atol 1e-4).

The references are the random tiny models of tests/convert/bert_fixtures.py (nothing is downloaded). Inputs
are right-padded with each model's pad id; only real positions are compared. XLM-RoBERTa's modeling code is
RoBERTa's under another `model_type`, so kzoo reads both with one converter; its fixture still runs so that
the `xlm-roberta` registration and the `XLMRoberta*` tensor names stay covered.

The converters only map tensors, so what depends on the Keras backend is the layers' arithmetic: the RoBERTa
(offset positions) and ELECTRA (projected embeddings) masked-LM parities run under both backends; the other
checks (XLM-R's registration, DistilBERT's tensor names, the RoBERTa pooler file, ELECTRA's dropped head)
under TensorFlow only, which keeps the JAX run (op-by-op compilation per model size) short.
"""

import numpy as np
import pytest
import torch

from kzoo import models
from kzoo.convert.huggingface import from_huggingface
from tests.convert import bert_fixtures, hf_fixtures
from tests.harness import to_numpy

PARITY_ATOL = 1e-4
MAPPING_ONLY = pytest.mark.backend("tensorflow", reason="a mapping check; the layers' JAX arithmetic is covered by "
                                                        "test_masked_lm_parity")


def _close(kzoo_value, torch_value, mask=None):
    got, want = to_numpy(kzoo_value), torch_value.detach().numpy()
    if mask is not None:
        got, want = got[mask.astype(bool)], want[mask.astype(bool)]
    difference = float(np.max(np.abs(got - want)))
    assert difference <= PARITY_ATOL, f"max abs difference {difference:.2e} > {PARITY_ATOL}"
    return difference


@pytest.mark.parametrize("variant", [pytest.param(name, marks=() if name in ("roberta", "electra") else MAPPING_ONLY)
                                     for name in bert_fixtures.VARIANTS])
def test_masked_lm_parity(tmp_path, variant):
    build, pad_id, has_segments = bert_fixtures.VARIANTS[variant]
    directory, reference = build(tmp_path)
    imported = from_huggingface(directory, family="bert")
    model, backbone = imported.model, imported.backbone
    assert isinstance(model, models.BertPretrainer) and not model.next_sentence_prediction
    vocab = imported.hf_config["vocab_size"]
    ids, mask = hf_fixtures.random_ids(3, 13, vocab, seed=7, pad_id=pad_id)
    # Sentence B from position 6 where the model has two segment types; DistilBERT ignores the ids it gets.
    segments = ((np.arange(13)[None] >= 6).repeat(3, 0) * mask).astype("int32")
    if backbone.num_segments == 1:
        segments = np.zeros_like(ids)
    hf_inputs = {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask)}
    if has_segments:
        hf_inputs["token_type_ids"] = torch.tensor(segments, dtype=torch.long)
    with torch.no_grad():
        out = reference(**hf_inputs, output_hidden_states=True)
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}
    sequence = _close(backbone(inputs)["sequence_output"], out.hidden_states[-1], mask)
    positions = np.array([[0, 5, 12], [1, 2, 3], [4, 7, 9]], "int32")
    logits = model({**inputs, "mask_positions": positions})["mlm_logits"]
    want = torch.gather(out.logits, 1, torch.tensor(positions, dtype=torch.long)[:, :, None].expand(-1, -1, vocab))
    masked_lm = _close(logits, want, np.take_along_axis(mask, positions, axis=1))
    print(f"{variant}: max |diff| sequence_output {sequence:.1e}, mlm_logits {masked_lm:.1e}")


@MAPPING_ONLY
def test_roberta_encoder_file_keeps_its_pooler(tmp_path):
    """A `RobertaModel` file has the pooler (as `roberta_base` counts it); positions are offset by 2."""
    directory, reference = bert_fixtures.make_roberta(tmp_path, head="model")
    backbone = from_huggingface(directory).model
    assert isinstance(backbone, models.BertBackbone) and backbone.pooler is not None
    assert (backbone.position_offset, backbone.max_sequence_length, backbone.num_segments) == (2, 40, 1)
    ids, mask = hf_fixtures.random_ids(2, 40, 103, seed=8, pad_id=1)  # the longest sequence the table allows
    with torch.no_grad():
        out = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask))
    outputs = backbone({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask})
    _close(outputs["sequence_output"], out.last_hidden_state, mask)
    _close(outputs["pooled_output"], out.pooler_output)


@MAPPING_ONLY
def test_electra_discriminator_file_loads_its_encoder_and_names_the_dropped_head(tmp_path, capsys):
    from kzoo import cli

    directory, reference = bert_fixtures.make_electra(tmp_path, head="discriminator")
    assert cli.main(["convert", directory, "--output", str(tmp_path / "electra.keras")]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("kzoo convert: warning: ELECTRA checkpoint: kzoo has no ")
    dropped = ("discriminator_predictions.dense.bias, discriminator_predictions.dense.weight, "
               "discriminator_predictions.dense_prediction.bias, discriminator_predictions.dense_prediction.weight")
    with pytest.warns(UserWarning, match=f"dropped its head, 4 tensors: {dropped}"):
        imported = from_huggingface(directory)
    backbone = imported.model
    assert isinstance(backbone, models.BertBackbone) and backbone.pooler is None
    assert backbone.embeddings_projection.kernel.shape == (18, 30)
    ids, mask = hf_fixtures.random_ids(2, 9, 89, seed=9, pad_id=0)
    with torch.no_grad():
        want = reference.electra(input_ids=torch.tensor(ids, dtype=torch.long),
                                 attention_mask=torch.tensor(mask)).last_hidden_state
    outputs = backbone({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask})
    _close(outputs["sequence_output"], want, mask)
