"""Input checks inside compiled graphs, where lengths and ids are only known at run time."""

import keras
import numpy as np
import pytest

from kzoo import layers


def _position_model():
    ids = keras.Input((None,), dtype="int32")
    x = layers.TokenEmbedding(10, 4)(ids)
    return keras.Model(ids, x + layers.PositionEmbedding(max_sequence_length=6)(x))


def test_predict_on_a_too_long_sequence_names_max_sequence_length():
    model = _position_model()
    model.predict(np.ones((2, 6), "int32"), verbose=0)
    with pytest.raises(Exception, match=r"exceeds `max_sequence_length`=6") as error:
        model.predict(np.ones((2, 9), "int32"), verbose=0)
    assert "Truncate the input" in str(error.value)


@pytest.mark.backend("tensorflow", reason="tf.debugging assertions exist only in TensorFlow graphs")
def test_graph_assertion_catches_out_of_range_ids_in_predict():
    """Under TensorFlow the compiled graph asserts; a GPU gather would return zeros."""
    model = _position_model()
    with pytest.raises(Exception, match=r"must lie in \[0, 10\)"):
        model.predict(np.array([[1, 2, 12]], "int32"), verbose=0)


@pytest.mark.backend("tensorflow", reason="tf.debugging assertions exist only in TensorFlow graphs")
def test_graph_assertion_catches_dynamic_length():
    import tensorflow as tf

    layer = layers.PositionEmbedding(max_sequence_length=4)
    layer.build((None, None, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, None, 3), tf.float32)])
    def positions(x):
        return layer(x)

    assert positions(tf.zeros((1, 4, 3))).shape == (1, 4, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"exceeds `max_sequence_length`=4"):
        positions(tf.zeros((1, 5, 3)))
