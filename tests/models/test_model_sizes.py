"""Family configs refuse bad sizes by name, and count their parameters without building anything."""

import keras
import pytest

from kzoo import models
from kzoo.models.backbone import count_serialized_parameters

BAD_SIZES = [  # (preset, field, value, what the message says)
    ("gpt_test", "num_layers", -1, "`num_layers` must be a positive integer, got -1"),
    ("gpt_test", "num_layers", 0, "`num_layers` must be a positive integer, got 0"),
    ("gpt_test", "vocabulary_size", 2.5, "`vocabulary_size` must be a positive integer, got 2.5"),
    ("gpt_test", "num_heads", 3, "`hidden_dim`=32 is not divisible by `num_heads`=3"),
    ("gpt_test", "rotary_dim", 7, "`rotary_dim`=7 must be even"),
    ("gpt_test", "dropout", 1.5, "`dropout` must be a rate in [0, 1), got 1.5"),
    ("gpt_test", "pad_vocabulary_to_multiple_of", 0, "`pad_vocabulary_to_multiple_of` must be a positive integer"),
    ("bert_test", "num_layers", "2", "`num_layers` must be a positive integer, got '2'"),
    ("bert_test", "num_segments", -2, "`num_segments` must be a non-negative integer (0: no segment embedding, as "
                                      "DistilBERT), got -2"),
    ("bert_test", "position_offset", -1, "`position_offset` must be a non-negative integer (RoBERTa: 2, BERT: 0)"),
    ("bert_test", "embedding_dim", 0, "`embedding_dim` must be a positive integer, got 0"),
    ("bert_test", "max_sequence_length", 0, "`max_sequence_length` must be a positive integer, got 0"),
    ("bert_test", "activation", "tanh", "unknown `activation`='tanh'"),
    ("bert_test", "use_pooler", "yes", "`use_pooler` must be true or false"),
    ("t5_test", "num_decoder_layers", -1, "`num_decoder_layers` must be a positive integer, got -1"),
    ("t5_test", "key_dim", 0, "`key_dim` must be a positive integer, got 0"),
    ("t5_test", "norm_epsilon", 0.0, "`norm_epsilon` must be a finite number > 0"),
    ("t5_test", "relative_buckets", 2, "`relative_buckets` must be at least 4"),
    ("t5_test", "position_offset", -1, "`position_offset` must be a non-negative integer"),
]


@pytest.mark.parametrize("preset,field,value,message", BAD_SIZES, ids=[f"{p}-{f}={v!r}" for p, f, v, _ in BAD_SIZES])
def test_bad_sizes_are_refused_before_anything_is_built(preset, field, value, message):
    """`--model.overrides=num_layers=-1` used to build (and train) a model with no blocks."""
    family = models.get_preset(preset).config
    with pytest.raises(ValueError, match=f"^{type(family).__name__}: ") as error:
        models.from_preset(preset, **{field: value})  # what a recipe's --model.overrides runs
    assert message in str(error.value)
    backbone_class = models.presets.FAMILIES[models.get_preset(preset).family]
    with pytest.raises(ValueError) as error:  # the constructor itself, as Keras calls it for a .keras file
        backbone_class(**{**family.to_dict(), field: value})
    assert message in str(error.value)


def test_heads_need_not_divide_the_width_when_key_dim_is_set():
    config = models.get_preset("t5_test").config.replace(num_heads=3, key_dim=16)
    assert config.num_heads == 3  # T5 sets its head size explicitly


def test_unknown_config_key_is_refused_by_name():
    config = models.from_preset("gpt_test").get_config()
    with pytest.raises(ValueError, match=r"GPTBackbone: unknown config key\(s\) \['bogus'\]; valid keys are "):
        models.GPTBackbone.from_config({**config, "bogus": 1})
    task = keras.saving.serialize_keras_object(models.GPTCausalLM(models.from_preset("gpt_test")))["config"]
    with pytest.raises(ValueError, match=r"GPTCausalLM: unknown config key\(s\) \['bogus'\]"):
        models.GPTCausalLM.from_config({**task, "bogus": 1})


def _tasks():
    bert = lambda **kw: models.from_preset("bert_test", **kw)  # noqa: E731
    seq2seq = dict(vocabulary_size=97, num_encoder_layers=2, num_decoder_layers=3, num_heads=2, hidden_dim=32,
                   intermediate_dim=48, max_sequence_length=40)
    return {
        "bert_backbone": lambda: bert(),
        "bert_backbone_no_pooler": lambda: bert(use_pooler=False),
        "bert_pretrainer": lambda: models.BertPretrainer(bert()),
        "bert_masked_lm": lambda: models.BertPretrainer(bert(use_pooler=False), next_sentence_prediction=False),
        "bert_classifier": lambda: models.BertClassifier(bert(), num_classes=3),
        "bert_tagger": lambda: models.BertTokenClassifier(bert(), num_classes=5),
        "bert_qa": lambda: models.BertSpanQA(bert()),
        "gpt_learned": lambda: models.GPTCausalLM(models.from_preset("gpt_test")),
        "gpt_rotary_padded": lambda: models.GPTCausalLM(models.from_preset(
            "gpt_test", position_embedding="rotary", rotary_dim=8, pad_vocabulary_to_multiple_of=64)),
        "t5": lambda: models.Seq2SeqLM(models.from_preset("t5_test")),
        "t5_v1_1": lambda: models.Seq2SeqLM(models.from_preset(
            "t5_test", gated_feed_forward=True, tie_word_embeddings=False, activation="gelu_tanh")),
        "transformer": lambda: models.Seq2SeqLM(models.Seq2SeqBackbone(**seq2seq)),
        "bart": lambda: models.Seq2SeqLM(models.Seq2SeqBackbone(
            **seq2seq, position_embedding="learned", position_offset=2, embedding_norm=True, scale_embeddings=False)),
    }


@pytest.mark.parametrize("name", list(_tasks()))
def test_counted_parameters_equal_the_built_model(name):
    model = _tasks()[name]()
    assert count_serialized_parameters(keras.saving.serialize_keras_object(model)) == model.count_params()


def test_counted_parameters_equal_the_published_counts():
    """The presets' published counts, reached analytically (the built presets are checked in test_presets)."""
    for preset in models.list_presets():
        if preset.published_parameters is not None:
            assert preset.config.parameter_count() == preset.published_parameters, preset.name


def test_a_huge_declared_size_is_counted_without_building():
    entry = keras.saving.serialize_keras_object(models.GPTCausalLM(models.from_preset("gpt_test")))
    entry["config"]["backbone"]["config"].update(num_layers=100_000, vocabulary_size=2**33)
    assert count_serialized_parameters(entry) > 2**38  # instant: nothing is allocated


def test_non_kzoo_objects_are_not_counted():
    dense = keras.layers.Dense(3)
    assert count_serialized_parameters(keras.saving.serialize_keras_object(dense)) is None
