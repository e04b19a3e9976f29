import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # One persistent compilation cache for the session, its xdist workers and the training processes tests start:
    # the same tiny models' steps are compiled again and again (every Trainer and subprocess jits afresh), and a
    # cached executable loads in a fraction of the compile time (a tiny GPT run: 26 s -> 9 s). Set before `import
    # keras` imports jax; removed by the process that made it.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="kzoo-jax-cache-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property tests (hypothesis): 300 examples per property, no deadline (the first example traces graphs), no
# example database in the working tree (a failure prints its example and reproduction blob instead). Fixtures
# are module or session scoped state that examples may share. Every run draws new examples, so CI's runs add up;
# HYPOTHESIS_PROFILE=thorough runs 1,000 per property (run it after changing a tokenizer or a signature), quick 50.
settings.register_profile(
    "kzoo", max_examples=300, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("thorough", settings.get_profile("kzoo"), max_examples=1000)
settings.register_profile("quick", settings.get_profile("kzoo"), max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kzoo"))

if keras.backend.backend() == "jax":
    import jax

    # The tests compare float32 against NumPy at 1e-5. On GPUs JAX's default float32
    # matmuls use TF32 (about 1e-3 relative error, measured on an H100), so ask for
    # full precision; on CPU this changes nothing.
    jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32, a fixed seed and a clear session.

    `clear_session(free_memory=False)`: the default also runs a full `gc.collect()`, which walks every object the
    worker holds (TensorFlow, JAX, torch and transformers are imported: ~0.5 M objects) and took 1-2 s per test on
    2 vCPUs, a quarter of the suite's time. Python's own collector still frees the tests' cyclic garbage. Measured
    worker peaks: 4.1 GB (TensorFlow run) and 5.9 GB (JAX run) this way; a full collection every 20 tests gave
    4.0 and 5.7 GB for 60 s of collections per run, so there is none.
    """
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.hookimpl(trylast=True)  # after directory conftests have added their backend markers
def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    for item in items:
        marker = item.get_closest_marker("backend")
        if marker and backend not in marker.args:
            why = marker.kwargs.get("reason")  # what the test needs that backend for
            item.add_marker(pytest.mark.skip(
                reason=f"needs the {marker.args} backend, running {backend}" + (f": {why}" if why else "")))
