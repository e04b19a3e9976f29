"""Step timing, variants alternated in one process, the measured CPU matmul ceilings, and the TensorFlow import
blocker of the workers."""

import importlib.abc
import statistics
import sys
import time


def time_steps(step, warmup, timed, sync_every=1):
    """Runs `step(sync)` (one training step) `warmup` times, then `timed` times.

    `step(True)` returns once its loss is on the host (a host sync) and returns it;
    `step(False)` only dispatches the step and returns None (asynchronous frameworks
    queue it behind the previous ones). Warm-up steps all sync. The timed steps run in
    windows of `sync_every`, only the last of each syncing, as a training loop that
    logs every `sync_every` steps runs; each window's time / `sync_every` is one entry
    of `step_times_s` (with 1, every step is timed alone).

    Returns first_step_s (the first call, tracing/compilation included), warmup_s (all
    warm-up calls), step_times_s, step_s (their median), step_cpu_s (median CPU time of
    this process per timed step, all threads), losses (of the syncing steps).
    """
    if timed % sync_every:
        raise ValueError(f"timed steps ({timed}) must be a multiple of sync_every ({sync_every})")
    losses = []
    started = time.perf_counter()
    losses.append(step(True))
    first = time.perf_counter() - started
    for _ in range(max(warmup - 1, 0)):
        losses.append(step(True))
    warmup_s = time.perf_counter() - started
    times, cpu_times = [], []
    for _ in range(timed // sync_every):
        started, cpu_started = time.perf_counter(), time.process_time()
        for index in range(sync_every):
            loss = step(index == sync_every - 1)
        losses.append(loss)
        times.append((time.perf_counter() - started) / sync_every)
        cpu_times.append((time.process_time() - cpu_started) / sync_every)
    result = summarize(first, warmup_s, times, cpu_times, losses)
    result["sync_every"] = sync_every
    return result


def alternate(calls, rounds):
    """Runs every `calls[name]()` once per round, the order rotating by one each round; returns {name: [seconds]}."""
    names = list(calls)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - started)
    return times


def spread(values):
    """{median, q1, q3} of `values` (inclusive quartiles; one value gives all three)."""
    if len(values) == 1:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3}


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


def single_thread_xla_flags(environment):
    """`environment`'s XLA_FLAGS plus the flags that keep XLA's CPU client on one thread (the only thread count
    JAX honours); they must be set before JAX starts."""
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return " ".join(filter(None, [environment.get("XLA_FLAGS"), flags]))


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
