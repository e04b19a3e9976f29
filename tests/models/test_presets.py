"""Every preset builds with exactly the published parameter count."""

import keras
import pytest

from kzoo import models

SMALL = {"bert_tiny", "bert_mini", "bert_small", "bert_test", "gpt_test", "gpt_tiny", "t5_test", "t5_tiny"}
# Weight shapes, hence counts, do not depend on the Keras backend: the large presets
# (up to 774M parameters) are built once, under TensorFlow, not again under JAX.
LARGE = (pytest.mark.slow, pytest.mark.backend("tensorflow"))


@pytest.mark.parametrize(
    "name", [pytest.param(p.name, marks=() if p.name in SMALL else LARGE) for p in models.list_presets()]
)
def test_preset_parameter_count_is_exact(name):
    preset = models.get_preset(name)
    backbone = models.from_preset(name)
    try:
        if preset.published_parameters is not None:
            assert backbone.count_params() == preset.published_parameters
        assert backbone.get_config()["vocabulary_size"] == preset.config.vocabulary_size
    finally:
        del backbone
        keras.backend.clear_session()
