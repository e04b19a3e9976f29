"""Step timing, the measured CPU matmul ceilings, and import helpers for the workers."""

import importlib.abc
import importlib.util
import os
import statistics
import sys
import time
import types


def time_steps(step, warmup, timed):
    """Runs `step()` (one training step that returns once its result is on the host)
    `warmup` times, then `timed` times, each timed alone.

    Returns first_step_s (the first call, tracing/compilation included), warmup_s (all
    warm-up calls), step_times_s (the timed calls), step_s (their median), step_cpu_s
    (median CPU time of this process per timed step, all threads), losses.
    """
    losses = []
    started = time.perf_counter()
    losses.append(step())
    first = time.perf_counter() - started
    for _ in range(max(warmup - 1, 0)):
        losses.append(step())
    warmup_s = time.perf_counter() - started
    times, cpu_times = [], []
    for _ in range(timed):
        started, cpu_started = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    return summarize(first, warmup_s, times, cpu_times, losses)


def summarize(first, warmup_s, times, cpu_times, losses):
    return {
        "first_step_s": first, "warmup_s": warmup_s, "step_times_s": times, "step_s": statistics.median(times),
        "step_min_s": min(times), "step_mean_s": statistics.fmean(times), "step_cpu_s": statistics.median(cpu_times),
        "losses": [float(x) for x in losses],
    }


def _best_rate(run, n, repeats):
    """GFLOP/s of the fastest of `repeats` calls of `run()` (an n x n x n matmul that syncs)."""
    run()
    run()
    best = min(_elapsed(run) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _elapsed(run):
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def matmul_ceiling(framework, n=2048, repeats=10):
    """The measured float32 matmul ceiling (GFLOP/s) of `framework` on this machine's CPUs:
    the best of `repeats` n x n @ n x n products (after two warm-up calls)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if framework == "tensorflow":
        import tensorflow as tf

        x, y = tf.constant(a), tf.constant(b)
        matmul = tf.function(tf.linalg.matmul)
        return _best_rate(lambda: matmul(x, y).numpy(), n, repeats)
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        x, y = jnp.asarray(a), jnp.asarray(b)
        matmul = jax.jit(jnp.matmul)
        return _best_rate(lambda: matmul(x, y).block_until_ready(), n, repeats)
    if framework == "torch":
        import torch

        x, y = torch.from_numpy(a), torch.from_numpy(b)
        return _best_rate(lambda: torch.matmul(x, y), n, repeats)
    raise ValueError(f"unknown framework {framework!r}")


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow` fail as on a machine where it is not installed."""

    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith(("tensorflow.", "tensorflow_", "tf_keras")):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by bench_train --no-tensorflow)",
                                      name=name)
        return None


def block_tensorflow():
    """From now on `import tensorflow` raises ModuleNotFoundError in this process."""
    if not any(isinstance(finder, _BlockTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BlockTensorFlow())


def import_kzoo_optimization():
    """`(kzoo.train.optimization, kzoo.train.config, how)`.

    `kzoo/train/__init__.py` imports `kzoo.train.loop`, which imports tensorflow at module
    level (as do `strategy.py` and `summaries.py`), so `from kzoo.train.optimization
    import build_optimizer` fails where TensorFlow is not installed, although
    `optimization.py` and `config.py` themselves need only keras. In that case this
    loads those two modules under a bare `kzoo.train` package object that skips
    `__init__.py` (kzoo's files are not changed), and `how` says so.
    """
    package = sys.modules.get("kzoo.train")
    if package is not None and getattr(package, "_loaded_without_init", None):
        return package.optimization, package.config, package._loaded_without_init
    try:
        from kzoo.train import config, optimization

        return optimization, config, "import kzoo.train.optimization"
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("tensorflow"):
            raise
        reason = f"{error}"
    for name in [name for name in sys.modules if name == "kzoo.train" or name.startswith("kzoo.train.")]:
        del sys.modules[name]
    import kzoo

    package = types.ModuleType("kzoo.train")
    package.__path__ = [os.path.join(os.path.dirname(kzoo.__file__), "train")]
    package.__package__ = "kzoo.train"
    sys.modules["kzoo.train"] = package
    modules = []
    for name in ("config", "optimization"):
        spec = importlib.util.spec_from_file_location(f"kzoo.train.{name}",
                                                      os.path.join(package.__path__[0], f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)
        modules.append(module)
    how = (f"kzoo.train.optimization loaded without kzoo/train/__init__.py: importing the package failed "
           f"({reason}; kzoo/train/__init__.py imports kzoo.train.loop, which imports tensorflow)")
    package._loaded_without_init = how
    return modules[1], modules[0], how
