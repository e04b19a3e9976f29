"""The BERT-family variants as `BertBackbone` configurations: RoBERTa's offset positions, DistilBERT's missing
segment embedding and pooler, ELECTRA's projected embeddings; every BERT task on them; exact preset counts."""

import keras
import numpy as np
import pytest

from kzoo import models, saving
from kzoo.models.backbone import count_serialized_parameters
from tests.harness import to_numpy

VARIANT_PRESETS = {  # name -> the count transformers gives its `*Model` (RobertaModel with its pooler)
    "roberta_base": 124_645_632,
    "distilbert_base_uncased": 66_362_880,
    "electra_base_discriminator": 108_891_648,
    "electra_small_discriminator": 13_483_008,
}


def _tiny(**overrides):
    """One block, odd sizes, and every variant option at once: no pooler, no segments, positions from row 2,
    7-wide embeddings projected to 10."""
    arguments = dict(vocabulary_size=37, num_layers=1, num_heads=2, hidden_dim=10, intermediate_dim=13,
                     max_sequence_length=12, num_segments=0, use_pooler=False, position_offset=2, embedding_dim=7,
                     dropout=0.0, attention_dropout=0.0)
    return models.BertBackbone(**{**arguments, **overrides})


def _inputs(batch=3, length=9, seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None] < np.array([length, 5, 2][:batch])[:, None]).astype("int32")
    return {"token_ids": (rng.integers(1, 37, (batch, length)) * mask).astype("int32"),
            "segment_ids": rng.integers(0, 2, (batch, length)).astype("int32"), "padding_mask": mask}


@pytest.mark.backend("tensorflow", reason="counts and shapes are the same under every backend")
@pytest.mark.parametrize("name", list(VARIANT_PRESETS))
def test_variant_preset_counts_are_exact_and_match_a_built_shrunken_copy(name):
    preset = models.get_preset(name)
    assert preset.published_parameters == VARIANT_PRESETS[name] == preset.config.parameter_count()
    shrunken = preset.config.replace(num_layers=1, vocabulary_size=97, max_sequence_length=20)
    backbone = models.BertBackbone(**shrunken.to_dict())
    assert backbone.count_params() == shrunken.parameter_count()
    assert (backbone.segment_embedding is None) == (preset.config.num_segments == 0)
    assert (backbone.embeddings_projection is None) == (name != "electra_small_discriminator")
    assert (backbone.pooler is None) == (name != "roberta_base")


@pytest.mark.backend("tensorflow", reason="wiring of the embeddings; their JAX arithmetic is covered by "
                                          "tests/convert/test_hf_bert_variants.py")
def test_variant_options_change_only_what_they_name():
    backbone = _tiny()
    inputs = _inputs()
    outputs = backbone(inputs)
    assert set(outputs) == {"sequence_output"} and outputs["sequence_output"].shape == (3, 9, 10)
    assert backbone.position_embedding_layer.position_embeddings.shape == (14, 7)  # 12 positions + 2 leading rows
    # No segment embedding: the segment ids are taken and ignored.
    ignored = backbone({**inputs, "segment_ids": np.zeros_like(inputs["segment_ids"])})
    np.testing.assert_array_equal(to_numpy(ignored["sequence_output"]), to_numpy(outputs["sequence_output"]))
    # Token i takes position row 2 + i: the same weights with the table's first two rows cut give the same outputs.
    plain = _tiny(position_offset=0)
    for source, target in zip(backbone.weights, plain.weights, strict=True):
        value = to_numpy(source)
        target.assign(value[2:] if source.path == "position_embedding/embeddings" else value)
    np.testing.assert_allclose(to_numpy(plain(inputs)["sequence_output"]), to_numpy(outputs["sequence_output"]),
                               atol=1e-6)


def _tasks(backbone):
    """{name: (task, its inputs, the shape of its first output)} for every BERT task on `backbone`."""
    inputs = _inputs()
    positions = np.array([[0, 3], [1, 4], [0, 1]], "int32")
    return {
        "classifier": (models.BertClassifier(backbone, num_classes=3), inputs, (3, 3)),
        "tagger": (models.BertTokenClassifier(backbone, num_classes=4), inputs, (3, 9, 4)),
        "qa": (models.BertSpanQA(backbone), inputs, (3, 9)),
        "pretrainer": (models.BertPretrainer(backbone, next_sentence_prediction=False),
                       {**inputs, "mask_positions": positions}, (3, 2, 37)),
    }


def test_every_bert_task_runs_on_a_backbone_without_pooler_and_segments():
    tasks = _tasks(_tiny())
    for name, (task, task_inputs, shape) in tasks.items():
        outputs = task(task_inputs)
        first = outputs if not isinstance(outputs, dict) else next(iter(outputs.values()))
        assert tuple(first.shape) == shape, name
        assert np.all(np.isfinite(to_numpy(first))), name
    # Without a pooler the classifier's own head reads [CLS] through a new tanh layer (trained with the head).
    assert tasks["classifier"][0].classification_head.intermediate.kernel.shape == (10, 10)
    # The masked-LM transform maps the 10-wide encoder output to the 7-wide tied embeddings.
    assert tasks["pretrainer"][0].masked_lm_head.transform.kernel.shape == (10, 7)


@pytest.mark.backend("tensorflow", reason="config counts and .keras files are the same under every backend")
def test_variant_tasks_count_their_parameters_and_round_trip_through_keras_files(tmp_path):
    backbone = _tiny()
    tasks = _tasks(backbone)
    for name, (task, _, _) in tasks.items():
        assert count_serialized_parameters(keras.layers.serialize(task)) == task.count_params(), name
    classifier, inputs, _ = tasks["classifier"]
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    restored = saving.load_model(path)
    assert restored.backbone.get_config() == backbone.get_config()
    np.testing.assert_allclose(to_numpy(restored(inputs)), to_numpy(classifier(inputs)), atol=1e-6)
