"""`.keras` files written by earlier kzoo versions still load, with the same outputs.

`earlier_files/` holds a GPT (attention with biases) and a T5 (no biases, cross-attention) saved when
`MultiHeadAttention` kept its four kernels and biases as its own variables, before the projections became Keras
`EinsumDense` sublayers (so that Keras' LoRA and quantization reach them), and the logits those models gave then
(`expected.npz`, computed under TensorFlow, so JAX agrees to float rounding).
"""

import os

import numpy as np
import pytest

from kzoo import saving
from kzoo.layers.attention import MultiHeadAttention

HERE = os.path.join(os.path.dirname(__file__), "earlier_files")


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(HERE, "expected.npz")))


def test_gpt_file_with_attention_biases_loads_with_the_same_logits(expected):
    model = saving.load_model(os.path.join(HERE, "gpt_test.keras"), compile=False)
    ids = expected["token_ids"]
    logits = np.asarray(model({"token_ids": ids, "padding_mask": ids > 0}))
    np.testing.assert_allclose(logits, expected["gpt_logits"], rtol=0, atol=1e-6)  # saved under TensorFlow
    attention = model.backbone.get_layer("decoder_block_0").self_attention
    assert isinstance(attention, MultiHeadAttention)
    assert [p.name for p in attention.projections] == ["query", "key", "value", "output"]


def test_t5_file_without_biases_loads_with_the_same_logits(expected):
    model = saving.load_model(os.path.join(HERE, "t5_test.keras"), compile=False)
    ids = expected["token_ids"]
    logits = np.asarray(model({"encoder_token_ids": ids, "encoder_padding_mask": ids > 0,
                               "decoder_token_ids": ids[:, :4], "decoder_padding_mask": ids[:, :4] > 0}))
    np.testing.assert_allclose(logits, expected["t5_logits"], rtol=0, atol=1e-6)


def test_a_file_saved_now_round_trips(tmp_path, expected):
    model = saving.load_model(os.path.join(HERE, "gpt_test.keras"), compile=False)
    model.save(tmp_path / "now.keras")
    again = saving.load_model(str(tmp_path / "now.keras"), compile=False)
    for before, after in zip(model.weights, again.weights, strict=True):
        assert before.path == after.path
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
