import pytest

JAX_TOO = {"test_bert_pretrainer_fits"}


def pytest_collection_modifyitems(config, items):
    """tf.data pipelines do not depend on the Keras backend, so the JAX run repeats only
    the training step that feeds one of them to a model (the rest run under TensorFlow)."""
    for item in items:
        if "tests/data/" in str(item.fspath).replace("\\", "/") and item.originalname not in JAX_TOO:
            item.add_marker(pytest.mark.backend("tensorflow"))
