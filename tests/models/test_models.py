"""The three families: shapes, tasks, `.keras` round trips, attention scores, bad input."""

import dataclasses
import inspect

import keras
import numpy as np
import pytest

from kzoo import models
from kzoo.models.backbone import KERAS_CONFIG_KEYS
from tests.harness import assert_keras_file_round_trip, to_numpy


def bert_inputs(batch=2, length=9, vocab=128, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), "int32")
    mask[1, length - 3:] = 0
    return {
        "token_ids": rng.integers(1, vocab, (batch, length)).astype("int32") * mask,
        "segment_ids": (np.arange(length)[None] >= length // 2).repeat(batch, 0).astype("int32"),
        "padding_mask": mask,
    }


def gpt_inputs(batch=2, length=9, vocab=128, seed=0):
    inputs = bert_inputs(batch, length, vocab, seed)
    return {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}


def seq2seq_inputs(batch=2, source=9, target=5, vocab=128, seed=0):
    encoder, decoder = bert_inputs(batch, source, vocab, seed), bert_inputs(batch, target, vocab, seed + 1)
    return {
        "encoder_token_ids": encoder["token_ids"], "encoder_padding_mask": encoder["padding_mask"],
        "decoder_token_ids": decoder["token_ids"], "decoder_padding_mask": decoder["padding_mask"],
    }


SEQ2SEQ_DESIGNS = {
    "transformer": {},
    "t5": {},  # the t5_test preset itself
    "bart": dict(position_embedding="learned", position_offset=2, activation="gelu", embedding_norm=True,
                 norm_type="layer", norm_first=False, use_bias=True, attention_scale=None, key_dim=None,
                 scale_decoder_outputs=False),
    "t5_v1_1": dict(activation="gelu_tanh", gated_feed_forward=True, tie_word_embeddings=False),
}


def seq2seq_backbone(design):
    if design == "transformer":
        return models.from_preset(
            "transformer_base", vocabulary_size=128, num_encoder_layers=2, num_decoder_layers=2, num_heads=2,
            hidden_dim=32, intermediate_dim=64, max_sequence_length=64,
        )
    return models.from_preset("t5_test", **SEQ2SEQ_DESIGNS[design])


def test_bert_tasks_shapes_and_round_trips(tmp_path):
    backbone = models.from_preset("bert_test")
    inputs = bert_inputs()
    outputs = backbone(inputs)
    assert outputs["sequence_output"].shape == (2, 9, 32) and outputs["pooled_output"].shape == (2, 32)
    pretraining_inputs = {**inputs, "mask_positions": np.array([[1, 2, 3], [0, 4, 5]], "int32")}
    cases = [
        (models.BertPretrainer(backbone), pretraining_inputs, {"mlm_logits": (2, 3, 128), "nsp_logits": (2, 2)}),
        (models.BertClassifier(backbone, num_classes=3), inputs, (2, 3)),
        (models.BertTokenClassifier(backbone, num_classes=5), inputs, (2, 9, 5)),
        (models.BertSpanQA(backbone), inputs, {"start_logits": (2, 9), "end_logits": (2, 9)}),
    ]
    for task, task_inputs, shapes in cases:
        result = task(task_inputs)
        got = {k: tuple(v.shape) for k, v in result.items()} if isinstance(result, dict) else tuple(result.shape)
        assert got == shapes, type(task).__name__
        (tmp_path / type(task).__name__).mkdir()
        restored = assert_keras_file_round_trip(task, task_inputs, tmp_path / type(task).__name__)
        assert restored.backbone.token_embedding is not None
    pretrainer = models.BertPretrainer(backbone)
    assert pretrainer.masked_lm_head.token_embedding is backbone.token_embedding
    classifier = cases[1][0]  # a task's arguments are attributes too
    assert (classifier.num_classes, classifier.dropout, pretrainer.next_sentence_prediction) == (3, 0.1, True)


@pytest.mark.parametrize("position_embedding", ["learned", "rotary"])
def test_gpt_causal_lm_is_causal_and_round_trips(tmp_path, position_embedding):
    lm = models.GPTCausalLM(models.from_preset("gpt_test", position_embedding=position_embedding))
    inputs = gpt_inputs()
    logits = to_numpy(lm(inputs))
    assert logits.shape == (2, 9, 128)
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["token_ids"][:, 5:] = 7
    np.testing.assert_allclose(to_numpy(lm(changed))[:, :5], logits[:, :5], atol=1e-5)
    assert_keras_file_round_trip(lm, inputs, tmp_path)


def test_gpt_padded_vocabulary_computes_what_the_unpadded_model_computes(tmp_path):
    """`pad_vocabulary_to_multiple_of` changes the table's shape only: with the same
    weights, the padded model gives the unpadded model's logits and greedy tokens."""
    plain = models.GPTCausalLM(models.from_preset("gpt_test", vocabulary_size=100, dropout=0.0))
    padded = models.GPTCausalLM(
        models.from_preset("gpt_test", vocabulary_size=100, dropout=0.0, pad_vocabulary_to_multiple_of=64)
    )
    inputs = gpt_inputs(vocab=100)
    plain(inputs)
    padded(inputs)
    table = padded.backbone.token_embedding.embeddings
    assert tuple(table.shape)[0] == 128
    for source, target in zip(plain.backbone.weights, padded.backbone.weights, strict=True):
        value = to_numpy(source)
        if target.path == table.path:
            value = np.concatenate([value, np.full((28, value.shape[1]), 7.0, value.dtype)])  # junk padding rows
        target.assign(value)
    np.testing.assert_allclose(to_numpy(padded(inputs)), to_numpy(plain(inputs)), atol=1e-6)
    prompt = {"token_ids": inputs["token_ids"][:, :4], "padding_mask": np.ones((2, 4), "int32")}
    np.testing.assert_array_equal(padded.generate(prompt, max_new_tokens=5), plain.generate(prompt, max_new_tokens=5))
    restored = assert_keras_file_round_trip(padded, inputs, tmp_path)
    assert restored.backbone.get_config()["pad_vocabulary_to_multiple_of"] == 64


# Llama-style variants of the GPT family, on the llama_test preset (GQA 4 -> 2 heads, untied output).
LLAMA_VARIANTS = {
    "llama": {},
    "qwen2": dict(attention_bias=True, tie_word_embeddings=True),
    "mistral": dict(sliding_window=3, rotary_scaling={"rope_type": "yarn", "factor": 2.0}),
}


@pytest.mark.parametrize("variant", list(LLAMA_VARIANTS))
def test_llama_style_backbone_counts_exactly_and_round_trips(tmp_path, variant):
    backbone = models.from_preset("llama_test", **LLAMA_VARIANTS[variant])
    config = models.get_preset("llama_test").config.replace(**LLAMA_VARIANTS[variant])
    assert backbone.count_params() == config.parameter_count()
    # Every projection kernel's (inputs, units) is what the analytic shape says (quantized sizes use it).
    kernels = {w.path.rsplit("/kernel", 1)[0]: tuple(w.shape) for w in backbone.weights if w.path.endswith("/kernel")}
    assert kernels["decoder_block_0/self_attention/key"] == (32, 2, 8)  # (d, h_kv, k)
    for path, shape in kernels.items():
        inputs = int(np.prod(shape[:-2])) if path.endswith(("query", "key", "value")) else int(np.prod(shape[:-1]))
        assert models.GPTBackbone.projection_shape(config, path) == (inputs, int(np.prod(shape)) // inputs), path
    has_bias = {name: any(w.path.endswith(f"self_attention/{name}/bias") for w in backbone.weights)
                for name in ("query", "output")}
    assert has_bias == {"query": variant == "qwen2", "output": False}
    assert not any("feed_forward" in w.path and w.path.endswith("bias") for w in backbone.weights)
    lm = models.GPTCausalLM(backbone)
    inputs = gpt_inputs()
    restored = assert_keras_file_round_trip(lm, inputs, tmp_path)
    assert restored.backbone.get_config() == backbone.get_config()


def test_untied_output_projection_has_its_own_kernel():
    backbone = models.from_preset("llama_test")
    hidden = np.random.default_rng(0).normal(size=(1, 2, 32)).astype("float32")
    kernel = to_numpy(backbone.token_embedding.reverse_embeddings)
    np.testing.assert_allclose(to_numpy(backbone.token_logits(hidden)), hidden @ kernel, atol=1e-5)
    backbone.token_embedding.embeddings.assign(np.zeros((128, 32), "float32"))  # the input table alone
    np.testing.assert_allclose(to_numpy(backbone.token_logits(hidden)), hidden @ kernel, atol=1e-5)


@pytest.mark.backend("tensorflow", reason="config validation runs before any backend op")
def test_gpt_variant_fields_are_validated_naming_the_field():
    config = models.get_preset("llama_test").config
    cases = [
        (dict(num_key_value_heads=3), r"`num_key_value_heads`=3 must divide `num_heads`=4; choose among \[1, 2, 4\]"),
        (dict(num_key_value_heads=0), r"`num_key_value_heads` must be a positive integer"),
        (dict(sliding_window=0), r"`sliding_window` must be a positive integer, got 0"),
        (dict(norm_type="batch"), r"unknown `norm_type`='batch'"),
        (dict(tie_word_embeddings="no"), r"`tie_word_embeddings` must be true or false"),
        (dict(rotary_scaling={"rope_type": "linear"}), r"`rotary_scaling`: rotary scaling 'linear' has missing key"),
        (dict(rotary_scaling={"rope_type": "linear", "factor": 2.0}, position_embedding="learned"),
         r"`rotary_scaling` scales rotary positions; set `position_embedding`='rotary'"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=r"GPTConfig: " + message):
            config.replace(**overrides)
    # The trained context of "dynamic"/"yarn"/"llama3" defaults to max_sequence_length (transformers'
    # max_position_embeddings), so the Hugging Face dict is taken as it is.
    backbone = models.from_preset("llama_test", rotary_scaling={"rope_type": "dynamic", "factor": 2.0})
    attention = backbone.decoder_blocks[0].self_attention
    assert attention.rotary_embedding.scaling["original_max_position_embeddings"] == 64
    assert backbone.get_config()["rotary_scaling"] == {"rope_type": "dynamic", "factor": 2.0}


@pytest.mark.parametrize("design", list(SEQ2SEQ_DESIGNS))
def test_seq2seq_designs_round_trip(tmp_path, design):
    backbone = seq2seq_backbone(design)
    lm = models.Seq2SeqLM(backbone)
    inputs = seq2seq_inputs()
    assert lm(inputs).shape == (2, 5, 128)
    assert_keras_file_round_trip(lm, inputs, tmp_path)
    has_lm_kernel = any(w.path.endswith("reverse_embeddings") for w in backbone.weights)
    assert has_lm_kernel == (design == "t5_v1_1")


def test_attention_scores_for_every_layer():
    bert = models.from_preset("bert_test")
    scores = bert.attention_scores(bert_inputs())
    assert len(scores) == 2 and scores[0].shape == (2, 2, 9, 9)
    np.testing.assert_allclose(to_numpy(scores[0])[1, :, :, -3:], 0.0)  # padding keys get nothing
    gpt_scores = models.from_preset("gpt_test").attention_scores(gpt_inputs())
    assert np.allclose(np.triu(to_numpy(gpt_scores[0])[0, 0], 1), 0.0)  # causal
    seq_scores = seq2seq_backbone("t5").attention_scores(seq2seq_inputs())
    assert seq_scores["decoder"][0]["cross_attention"].shape == (2, 2, 5, 9)


# XLA compilation of each train step costs ~10 s on 2 cores under TensorFlow and the
# layer-stack test already covers jit there; JAX needs jit to avoid op-by-op dispatch.
JIT = keras.backend.backend() == "jax"


def test_fit_one_step_per_family():
    classifier = models.BertClassifier(models.from_preset("bert_test"), num_classes=2)
    classifier.compile(jit_compile=JIT)
    history = classifier.fit(bert_inputs(4), np.array([0, 1, 1, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    lm = models.GPTCausalLM(models.from_preset("gpt_test"))
    lm.compile(jit_compile=JIT)
    inputs = gpt_inputs(4)
    targets = np.roll(inputs["token_ids"], -1, axis=1)
    history = lm.fit(inputs, targets, sample_weight=inputs["padding_mask"], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    seq2seq = models.Seq2SeqLM(seq2seq_backbone("t5"))
    seq2seq.compile(jit_compile=JIT)
    inputs = seq2seq_inputs(4)
    history = seq2seq.fit(inputs, inputs["decoder_token_ids"], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_unknown_preset_and_field_errors():
    with pytest.raises(ValueError, match=r"Unknown preset 'bert_huge'. Valid presets: .*bert_base"):
        models.from_preset("bert_huge")
    with pytest.raises(ValueError, match=r"has no field\(s\) \['hidden_size'\]; valid fields are"):
        models.from_preset("bert_test", hidden_size=64)


def test_bad_ids_and_lengths_raise_value_errors():
    bert = models.from_preset("bert_test")
    too_long = bert_inputs(length=65)
    with pytest.raises(ValueError, match=r"length 65 exceeds `max_sequence_length`=64"):
        bert(too_long)
    bad_ids = bert_inputs()
    bad_ids["token_ids"][0, 0] = 128
    with pytest.raises(ValueError, match=r"must lie in \[0, 128\)"):
        bert(bad_ids)
    bad_segments = bert_inputs()
    bad_segments["segment_ids"][0, 0] = 2
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        bert(bad_segments)
    with pytest.raises(ValueError, match="exceeds `max_sequence_length`=64"):
        models.from_preset("gpt_test")(gpt_inputs(length=70))


@pytest.mark.parametrize("family", sorted(models.presets.FAMILIES))
def test_config_fields_are_the_backbone_arguments(family):
    """One source for sizes: a family's config dataclass lists its backbone's arguments (minus `dtype`), in order,
    with the same defaults where the constructor has one (the sizes it requires have a config default)."""
    backbone_class = models.presets.FAMILIES[family]
    parameters = [parameter for parameter in inspect.signature(backbone_class.__init__).parameters.values()
                  if parameter.name not in ("self", "dtype") and parameter.kind is not parameter.VAR_KEYWORD]
    fields = dataclasses.fields(backbone_class.config_class)
    assert [parameter.name for parameter in parameters] == [field.name for field in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        if parameter.default is not parameter.empty:
            assert parameter.default == field.default, parameter.name


def test_backbone_config_round_trip():
    for name in ("bert_test", "gpt_test", "t5_test", "llama_test"):
        backbone = models.from_preset(name)
        arguments = models.get_preset(name).config.to_dict()
        assert {key: getattr(backbone, key) for key in arguments} == arguments  # its `# === Config ===` attributes
        own_keys = {key: value for key, value in backbone.get_config().items() if key not in KERAS_CONFIG_KEYS}
        assert own_keys == arguments
        clone = type(backbone).from_config(backbone.get_config())
        assert clone.get_config() == backbone.get_config()
        assert clone.count_params() == backbone.count_params()


def test_mixed_precision_backbones_are_finite():
    backbone = models.from_preset("t5_test", dtype="mixed_bfloat16")
    outputs = backbone(seq2seq_inputs())
    assert outputs["decoder_sequence_output"].dtype == "bfloat16"
    assert np.isfinite(to_numpy(keras.ops.cast(outputs["decoder_sequence_output"], "float32"))).all()


@pytest.mark.backend("tensorflow", reason="which initializer each layer takes does not depend on the backend")
@pytest.mark.parametrize(("name", "overrides"), [
    ("bert_test", {"embedding_dim": 16}), ("gpt_test", {}), ("llama_test", {}), ("t5_test", {}),
    ("t5_test", {"position_embedding": "learned", "tie_word_embeddings": False}),
])
def test_backbones_built_for_an_import_draw_no_random_values(name, overrides):
    """Inside `weights_to_be_overwritten` (what the importers use) every weight starts at 0 (kernels, tables,
    biases) or 1 (norm scales): a layer that still drew random values would cost an import time and memory."""
    from kzoo.models.backbone import weights_to_be_overwritten

    with weights_to_be_overwritten():
        backbone = models.from_preset(name, **overrides)
    drawn = [weight.path for weight in backbone.weights
             if not np.isin(keras.ops.convert_to_numpy(weight), (0.0, 1.0)).all()]
    assert not drawn
    assert any(np.abs(keras.ops.convert_to_numpy(w)).max() not in (0.0, 1.0) for w in models.from_preset(name).weights)


def _drawn_weights(name, overrides, seed):
    """`{path: values}` of the weights that a freshly built model drew at random (not the 0/1 of biases and
    norms), after `keras.utils.set_random_seed(seed)`; BERT is built with its pretraining heads."""
    keras.utils.set_random_seed(seed)
    model = models.from_preset(name, **overrides)
    if name == "bert_test":
        model = models.BertPretrainer(model)
    values = {weight.path: to_numpy(weight) for weight in model.weights}
    return {path: value for path, value in values.items() if not np.isin(value, (0.0, 1.0)).all()}


def _leading_values(first, second):
    """The first values of two arrays (flattened), as many as the smaller holds."""
    size = min(first.size, second.size)
    return first.ravel()[:size], second.ravel()[:size]


@pytest.mark.backend("tensorflow", reason="the seed each weight gets does not depend on the backend; JAX's "
                     "stateless random ops repeat values for a repeated seed as TensorFlow's do")
@pytest.mark.parametrize(("name", "overrides"), [
    ("bert_test", {"embedding_dim": 16}),  # + embeddings projection, pooler, masked-LM and next-sentence heads
    ("llama_test", {}),  # gated feed-forward, grouped-query attention, untied output table
    ("t5_test", {}),  # relative position bias
    ("t5_test", SEQ2SEQ_DESIGNS["bart"]),  # learned positions with an offset, biases
])
def test_fresh_models_draw_every_weight_independently_and_reproducibly(name, overrides):
    """A Keras random initializer returns the same values on every call (and a call of another shape starts with
    the same values), so one shared instance gave every kernel and table of a model the same numbers: no two
    weights may share their leading values. The same `set_random_seed` rebuilds the same model."""
    drawn = _drawn_weights(name, overrides, seed=7)
    assert len(drawn) >= 10
    paths = sorted(drawn)
    shared = [(first, second) for index, first in enumerate(paths) for second in paths[index + 1:]
              if np.array_equal(*_leading_values(drawn[first], drawn[second]))]
    assert not shared
    again = _drawn_weights(name, overrides, seed=7)
    assert sorted(again) == paths
    for path in paths:
        np.testing.assert_array_equal(again[path], drawn[path], err_msg=path)
