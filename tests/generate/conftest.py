import pytest

from tests.generate import helpers


@pytest.fixture(scope="session")
def gpt():
    """The tiny learned-position GPT most tests share (with its compiled loops: a test
    that repeats another's prompt shape and options reuses the compiled function)."""
    return helpers.tiny_gpt("learned", seed=0)


@pytest.fixture(scope="session")
def rotary_gpt():
    return helpers.tiny_gpt("rotary", seed=0)
