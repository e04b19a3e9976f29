"""Every preset has exactly the published parameter count.

Presets up to ~30M parameters are built and counted. Larger ones (up to 1.1B) are not built in CI: their
analytic count (`config.parameter_count()`, computed from the sizes) is asserted against the published figure,
and that same formula is checked against a built model on a shrunken copy of each config (one layer per stack
and a small vocabulary, every width and option kept), so each part that repeats is counted as built.
"""

import keras
import pytest

from kzoo import models
from kzoo.models.presets import FAMILIES

BUILT = 30_000_000  # presets up to this size are built whole
# Weight shapes, hence counts, do not depend on the Keras backend: checked once, under TensorFlow.
TF_ONLY = pytest.mark.backend("tensorflow", reason="weight shapes, hence counts, do not depend on the Keras backend")
SMALL = [p.name for p in models.list_presets() if p.config.parameter_count() <= BUILT]
LARGE = [p.name for p in models.list_presets() if p.config.parameter_count() > BUILT]
LAYER_FIELDS = ("num_layers", "num_encoder_layers", "num_decoder_layers")


def _count_built(family, config):
    backbone = FAMILIES[family](**config.to_dict())
    try:
        assert FAMILIES[family].count_parameters(backbone.get_config()) == config.parameter_count()
        return backbone.count_params()
    finally:
        del backbone
        keras.backend.clear_session()


@pytest.mark.parametrize("name", SMALL)
def test_small_presets_build_with_the_published_count(name):
    preset = models.get_preset(name)
    backbone = models.from_preset(name)
    try:
        if preset.published_parameters is not None:
            assert backbone.count_params() == preset.published_parameters
        assert backbone.count_params() == preset.config.parameter_count()
        assert backbone.get_config()["vocabulary_size"] == preset.config.vocabulary_size
    finally:
        del backbone
        keras.backend.clear_session()


@TF_ONLY
@pytest.mark.parametrize("name", LARGE)
def test_large_presets_count_exactly_and_their_formula_matches_a_built_shrunken_copy(name):
    preset = models.get_preset(name)
    assert preset.published_parameters is not None, f"{name} is large and reproduces no published model"
    assert preset.config.parameter_count() == preset.published_parameters
    fields = {field: 1 for field in LAYER_FIELDS if hasattr(preset.config, field)}
    shrunken = preset.config.replace(vocabulary_size=96, **fields)
    assert _count_built(preset.family, shrunken) == shrunken.parameter_count()
