"""Exports of a Llama-style GPT: the ONNX decoder-with-past graphs and the SavedModel `generate` signature decode
the same tokens as `model.generate`.

The model has what Llama-family decoders add to GPT-2: grouped-query attention (the past keys/values hold only
the 2 key/value heads of 4), an untied head, RMSNorm and SwiGLU, a 6-key sliding window (Mistral) and dynamic
NTK rotary scaling over an 8-token context, which prompts plus new tokens pass, so the rotary frequencies
change inside the exported decoding loops. One decoder block: every feature lives in the block, and exports
cost seconds per block.

The reference `model.generate` runs its loop eagerly (`tf.config.run_functions_eagerly`): the same keras.ops
code without two more traces; the exports trace it.
"""


import numpy as np
import pytest
import tensorflow as tf

from kzoo import models, text
from kzoo.export import onnx as onnx_export
from kzoo.export import savedmodel
from kzoo.export.onnx_generate import OnnxGenerator
from kzoo.export.serving import ServingSettings
from tests.generate import helpers
from tests.harness import tensorflow_functions_run_eagerly
from tests.text.sentences import corpus_lines

pytestmark = pytest.mark.backend("tensorflow", reason="exports trace TensorFlow graphs")

CONTEXT = 8
NEW_TOKENS = 8


def _llama_style(vocabulary_size):
    backbone = models.GPTBackbone(
        vocabulary_size=vocabulary_size, num_layers=1, num_heads=4, num_key_value_heads=2, hidden_dim=16,
        intermediate_dim=24, max_sequence_length=CONTEXT, position_embedding="rotary",
        rotary_scaling={"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": CONTEXT},
        sliding_window=6, norm_type="rms", gated_feed_forward=True, activation="silu", attention_bias=False,
        attention_output_bias=False, feed_forward_bias=False, tie_word_embeddings=False, dropout=0.0,
    )
    model = models.GPTCausalLM(backbone)
    helpers.randomize(model, seed=3)
    return model


def test_onnx_and_savedmodel_generation_equal_model_generate(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    spiece = text.train_sentencepiece([corpus], 300, tmp_path / "sentencepiece")
    tokenizer = text.SentencePieceTokenizer.from_files(spiece)
    model = _llama_style(tokenizer.vocabulary_size)

    onnx_dir = tmp_path / "onnx"
    onnx_export.export_onnx(model, onnx_dir)
    past_shapes = onnx_export.load_metadata(onnx_dir)["decoding"]
    assert (past_shapes["num_heads"], past_shapes["num_key_value_heads"]) == (4, 2)
    prompts = [[5, 17, 33, 2, 9, 11, 40, 41, 42], [7, 8], [100, 3, 4, 90]]  # 9 + 8 tokens: past the context
    with tensorflow_functions_run_eagerly():
        expected = model.generate(prompts, strategy="greedy", jit_compile=False, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(OnnxGenerator(onnx_dir).generate(prompts, max_new_tokens=NEW_TOKENS), expected)
    assert len(set(expected.ravel().tolist())) > 3  # varied tokens, not one id repeated

    settings = ServingSettings(sequence_length=24, max_new_tokens=NEW_TOKENS)
    result = savedmodel.export_savedmodel(model, tmp_path / "sm", tokenizer=tokenizer, settings=settings,
                                          tokenizer_files={"spiece.model": str(spiece)}, warmup=False)
    texts = ["the quick brown fox jumps over the lazy dog", "tokenizer", "a model learns"]
    served = tf.saved_model.load(result.path).signatures["generate"](prompts=tf.constant(texts))
    served_text = [value.decode("utf-8") for value in served["text"].numpy().tolist()]
    ids = tokenizer.tokenize(texts[0]).numpy()
    assert len(ids) + NEW_TOKENS > CONTEXT
    with tensorflow_functions_run_eagerly():
        assert served_text == model.generate(texts, tokenizer=tokenizer, max_new_tokens=NEW_TOKENS)
        direct = model.generate(ids, max_new_tokens=NEW_TOKENS, stop_token_ids=[tokenizer.special_token_ids["eos"]])
    np.testing.assert_array_equal(served["token_ids"].numpy()[0][: len(direct)], direct)
