"""kzoo vs keras-hub training steps alternated in ONE process (TensorFlow backend): the CPU ratio, without the
process-to-process noise of `tools/bench_train.py`.

`bench_train.py` runs each peer in its own process, which keeps imports and thread pools apart but exposes every
row to the machine's drift: on a shared 2-vCPU machine the same worker's step time varied by 15-30% from one
process to the next (and so did its measured matmul ceiling). Here both peers are built in one process on the same
sizes and batch (`tools/bench/specs.py`, CPU size set) and their steps alternate, the order flipping every round,
so drift hits both alike; the result is the median of the per-round ratios.

* kzoo: `kzoo.train.Trainer`'s train function, `--steps-per-call` steps per call (the Trainer's default runs up to
  the next log step, 10), its per-step losses read at the end of the call.
* keras-hub: `GPT2CausalLM` / `BertMaskedLM` compiled as in bench_train.py (AdamW, global clipnorm 1.0), stepped
  with Keras' own `make_train_function()` (what `fit` runs per batch), `--steps-per-call` calls and then the
  loss read.

Usage:
    .venv/bin/python tools/bench_train_ab.py                      # gpt and bert, 1 thread, 20 rounds
    .venv/bin/python tools/bench_train_ab.py --steps-per-call 10 --models gpt
    .venv/bin/python tools/bench_train_ab.py --quick              # test sizes, 3 rounds (seconds)
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _kzoo_step(spec, batch, steps_per_call, output_dir):
    from tools.bench import keras_peers

    _, config = keras_peers._train_config(spec, "float32", False, output_dir)
    _, train_function, iterator = keras_peers.kzoo_trainer_function(spec, batch, config)

    def step():
        losses, norms, _, _, _ = train_function(iterator, steps_per_call)
        float(norms[-1])
        return float(losses[-1])

    return step


def _keras_hub_step(spec, batch, steps_per_call):
    import keras
    import tensorflow as tf

    from tools.bench import keras_peers

    model = keras_peers.keras_hub_compiled(keras, spec, 0.0, jit_compile=False)
    data = keras_peers._keras_hub_data(spec, batch)
    model.fit(*data[:2], sample_weight=data[2], epochs=1, batch_size=spec.batch_size, verbose=0)  # builds it all
    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    train_function = model.make_train_function()

    def step():
        for _ in range(steps_per_call):
            logs = train_function(iterator)
        return float(logs["loss"])

    return step


def compare(model_name, args):
    """Alternates the two peers' steps; returns the row of one model."""
    import keras

    from tools.bench import specs

    spec = specs.SIZE_SETS[args.size_set][model_name]
    batch = specs.numpy_batch(spec)
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_train_ab_") as output_dir:
        steps = {"kzoo": _kzoo_step(spec, batch, args.steps_per_call, output_dir),
                 "keras_hub": _keras_hub_step(spec, batch, args.steps_per_call)}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        times = {name: [] for name in steps}
        for round_index in range(args.rounds):
            for name in (("kzoo", "keras_hub") if round_index % 2 == 0 else ("keras_hub", "kzoo")):
                started = time.perf_counter()
                steps[name]()
                times[name].append((time.perf_counter() - started) / args.steps_per_call)
    ratios = sorted(hub / kzoo for kzoo, hub in zip(times["kzoo"], times["keras_hub"], strict=True))
    quartile = len(ratios) // 4
    return {
        "model": model_name, "config": spec.name, "steps_per_call": args.steps_per_call, "rounds": args.rounds,
        "kzoo_step_s": statistics.median(times["kzoo"]), "keras_hub_step_s": statistics.median(times["keras_hub"]),
        "ratio_keras_hub_to_kzoo": statistics.median(ratios),
        "ratio_quartiles": [ratios[quartile], ratios[-1 - quartile]], "times_s": times,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--models", nargs="+", choices=("gpt", "bert"), default=["gpt", "bert"])
    parser.add_argument("--steps-per-call", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (one call of each peer per round)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls of each peer first")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="test-sized models, 3 rounds")
    parser.add_argument("--output", default="bench_train_ab.json")
    args = parser.parse_args(argv)
    if args.steps_per_call < 1 or args.rounds < 1:
        parser.error("--steps-per-call and --rounds must be >= 1")
    args.size_set = "quick" if args.quick else "cpu"
    if args.quick:
        args.rounds, args.warmup = 3, 1
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"kzoo vs keras-hub, alternated in one process: {args.size_set} sizes, TensorFlow, "
          f"{args.threads or 'default'} thread(s), {args.steps_per_call} step(s) per call, {args.rounds} rounds")
    print(f"{'model':5s} {'kzoo ms':>9s} {'keras-hub ms':>13s} {'keras-hub/kzoo':>15s} {'quartiles':>14s}")
    rows = []
    for model_name in args.models:
        row = compare(model_name, args)
        rows.append(row)
        low, high = row["ratio_quartiles"]
        print(f"{model_name:5s} {1e3 * row['kzoo_step_s']:>9.1f} {1e3 * row['keras_hub_step_s']:>13.1f} "
              f"{row['ratio_keras_hub_to_kzoo']:>15.3f} {low:>6.3f}-{high:<6.3f}", flush=True)
    print("keras-hub/kzoo: median of the per-round step-time ratios (> 1: kzoo is faster)")
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows}, file, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
