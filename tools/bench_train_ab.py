"""kzoo vs keras-hub training steps alternated in ONE process, under TensorFlow or JAX: the CPU ratio, without the
process-to-process noise of `tools/bench_train.py`.

`bench_train.py` runs each peer in its own process, which keeps imports and thread pools apart but exposes every
row to the machine's drift: on a shared 2-vCPU machine the same worker's step time varied by 15-30% from one
process to the next (and so did its measured matmul ceiling). Here both peers are built in one process on the same
sizes and batch (`tools/bench/specs.py`, CPU size set) and their steps alternate, the order flipping every round,
so drift hits both alike; the result is the median of the per-round ratios.

* kzoo: the compiled steps `kzoo.train.Trainer` trains with (`trainer.backend_steps`, built by a Trainer on a
  `tf.data` dataset of the batch): `backend_steps.train(batches, n)` runs `--steps-per-call` steps in one call and
  returns their losses, as `Trainer.fit` calls it between log steps (its default: up to the next log step, 10).
* keras-hub: `GPT2CausalLM` / `BertMaskedLM` compiled as in bench_train.py (AdamW, global clipnorm 1.0; under JAX
  jit-compiled, as `fit` runs it there), stepped with Keras' own train function (`make_train_function()`: what
  `fit` runs per batch; under JAX it carries the state from call to call as `fit` does) on the same `tf.data`
  stream, `--steps-per-call` calls and then the loss read.

`--backend jax` also prints kzoo's TensorFlow/JAX step-time ratio: a Keras process runs one backend, so the
TensorFlow figure comes from this script run again with `--backend tensorflow` (same sizes, rounds and threads)
in a subprocess after the JAX rounds; its kzoo step time over the JAX one (> 1: JAX is faster). The two are
measured one after the other, so machine drift between them enters this ratio (not the keras-hub one).

Usage:
    .venv/bin/python tools/bench_train_ab.py                      # TensorFlow: gpt and bert, 1 thread, 20 rounds
    .venv/bin/python tools/bench_train_ab.py --backend jax        # JAX, then the TensorFlow/JAX ratio of kzoo
    .venv/bin/python tools/bench_train_ab.py --steps-per-call 10 --models gpt
    .venv/bin/python tools/bench_train_ab.py --quick              # test sizes, 3 rounds (seconds)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _kzoo_step(spec, batch, steps_per_call, output_dir):
    from tools.bench import keras_peers

    config = keras_peers.train_config(spec, "float32", False, output_dir, steps_per_call)
    _, backend_steps, batches = keras_peers.kzoo_trainer_steps(spec, batch, config)

    def step():
        losses, norms, _, _, _ = backend_steps.train(batches, steps_per_call)
        float(norms[-1])
        return float(losses[-1])

    return step


def _keras_hub_step(spec, batch, steps_per_call):
    import keras
    import tensorflow as tf

    from tools.bench import keras_peers

    under_jax = keras.backend.backend() == "jax"
    model = keras_peers.keras_hub_compiled(keras, spec, 0.0, jit_compile=under_jax)
    data = keras_peers.keras_hub_data(spec, batch)
    model.fit(*data[:2], sample_weight=data[2], epochs=1, batch_size=spec.batch_size, verbose=0)  # builds it all
    dataset = tf.data.Dataset.from_tensors(data).repeat()
    model.make_train_function()
    if not under_jax:
        iterator = iter(dataset)

        def step():
            for _ in range(steps_per_call):
                logs = model.train_function(iterator)
            return float(logs["loss"])

        return step
    # JAX: the train function is stateless, `(logs, state) = train_function(state, iterator)`, the state donated.
    iterator = dataset.as_numpy_iterator()
    state = [tuple([variable.value for variable in group] for group in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))]

    def step():
        for _ in range(steps_per_call):
            logs, state[0] = model.train_function(state[0], iterator)
        return float(logs["loss"])

    return step


def compare(model_name, args):
    """Alternates the two peers' steps; returns the row of one model."""
    import keras

    from tools.bench import specs, timing

    spec = specs.SIZE_SETS[args.size_set][model_name]
    batch = specs.numpy_batch(spec)
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_train_ab_") as output_dir:
        steps = {"kzoo": _kzoo_step(spec, batch, args.steps_per_call, output_dir),
                 "keras_hub": _keras_hub_step(spec, batch, args.steps_per_call)}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        times = {name: [seconds / args.steps_per_call for seconds in values]
                 for name, values in timing.alternate(steps, args.rounds).items()}  # the order flips every round
    ratios = sorted(hub / kzoo for kzoo, hub in zip(times["kzoo"], times["keras_hub"], strict=True))
    quartile = len(ratios) // 4
    return {
        "model": model_name, "config": spec.name, "backend": args.backend, "steps_per_call": args.steps_per_call,
        "rounds": args.rounds, "kzoo_step_s": statistics.median(times["kzoo"]),
        "keras_hub_step_s": statistics.median(times["keras_hub"]),
        "ratio_keras_hub_to_kzoo": statistics.median(ratios),
        "ratio_quartiles": [ratios[quartile], ratios[-1 - quartile]], "times_s": times,
    }


def _tensorflow_reference(args):
    """{model: kzoo step seconds under TensorFlow}, from this script run with `--backend tensorflow`."""
    with tempfile.TemporaryDirectory(prefix="bench_train_ab_tf_") as folder:
        output = os.path.join(folder, "tensorflow.json")
        command = [sys.executable, os.path.abspath(__file__), "--backend", "tensorflow", "--models", *args.models,
                   "--steps-per-call", str(args.steps_per_call), "--rounds", str(args.rounds),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--output", output]
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        done = subprocess.run(command + (["--quick"] if args.quick else []), capture_output=True, text=True,
                              env=environment, check=False, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"the TensorFlow run failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        with open(output, encoding="utf-8") as file:
            return {row["model"]: row["kzoo_step_s"] for row in json.load(file)["rows"]}


def _set_up_backend(backend, threads):
    """Chooses the Keras backend and the thread count before either framework starts (this process imports
    TensorFlow under both: the kzoo Trainer reads its batches with tf.data)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend == "jax" and threads == 1:
        from tools.bench.timing import single_thread_xla_flags

        os.environ["XLA_FLAGS"] = single_thread_xla_flags(os.environ)
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow",
                        help="Keras backend of both peers (default tensorflow, as tools/bench_train.py)")
    parser.add_argument("--models", nargs="+", choices=("gpt", "bert"), default=["gpt", "bert"])
    parser.add_argument("--steps-per-call", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (one call of each peer per round)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls of each peer first")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads: TensorFlow intra/inter-op threads; JAX honours only 1 (0: defaults)")
    parser.add_argument("--no-tensorflow-reference", dest="tensorflow_reference", action="store_false",
                        help="--backend jax: skip the TensorFlow run that gives kzoo's TF/JAX step-time ratio")
    parser.add_argument("--quick", action="store_true", help="test-sized models, 2 warm-up calls, 3 rounds")
    parser.add_argument("--output", default="bench_train_ab.json")
    args = parser.parse_args(argv)
    if args.steps_per_call < 1 or args.rounds < 1:
        parser.error("--steps-per-call and --rounds must be >= 1")
    args.size_set = "quick" if args.quick else "cpu"
    if args.quick:
        args.rounds, args.warmup = 3, 2
    _set_up_backend(args.backend, args.threads)
    reference = args.backend == "jax" and args.tensorflow_reference
    print(f"kzoo vs keras-hub, alternated in one process: {args.size_set} sizes, {args.backend}, "
          f"{args.threads or 'default'} thread(s), {args.steps_per_call} step(s) per call, {args.rounds} rounds")
    rows = []
    for model_name in args.models:
        row = compare(model_name, args)
        rows.append(row)
        print(f"{model_name}: kzoo {1e3 * row['kzoo_step_s']:.2f} ms, keras-hub {1e3 * row['keras_hub_step_s']:.2f} "
              f"ms per step", flush=True)
    if reference:
        print("running the same under TensorFlow for kzoo's TF/JAX step-time ratio ...", flush=True)
        tensorflow_step_s = _tensorflow_reference(args)
        for row in rows:
            seconds = tensorflow_step_s[row["model"]]
            row.update(kzoo_tensorflow_step_s=seconds, kzoo_tensorflow_to_jax=seconds / row["kzoo_step_s"])
    print(f"{'model':5s} {'kzoo ms':>9s} {'keras-hub ms':>13s} {'keras-hub/kzoo':>15s} {'quartiles':>14s}"
          + (f" {'kzoo TF ms':>11s} {'kzoo TF/JAX':>12s}" if reference else ""))
    for row in rows:
        low, high = row["ratio_quartiles"]
        line = (f"{row['model']:5s} {1e3 * row['kzoo_step_s']:>9.2f} {1e3 * row['keras_hub_step_s']:>13.2f} "
                f"{row['ratio_keras_hub_to_kzoo']:>15.3f} {low:>6.3f}-{high:<6.3f}")
        if reference:
            line += f" {1e3 * row['kzoo_tensorflow_step_s']:>11.2f} {row['kzoo_tensorflow_to_jax']:>12.3f}"
        print(line)
    print("keras-hub/kzoo: median of the per-round step-time ratios (> 1: kzoo is faster)"
          + ("; kzoo TF/JAX: kzoo's TensorFlow step time (a separate process) over its JAX one (> 1: JAX is faster)"
             if reference else ""))
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows}, file, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
