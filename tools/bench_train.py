"""Training throughput: kzoo vs keras-hub vs transformers vs a nanoGPT-style PyTorch GPT.

Each (peer, model) measurement runs in its own subprocess, so imports, thread pools,
compilation caches and memory do not leak between peers. Every peer trains the same
sizes from random init on the same random batch (dropout 0 unless --dropout), with
AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-6, weight decay 0.01 on matrices only) and
global-norm clipping at 1.0; see tools/bench/keras_peers.py and torch_peers.py for each
peer's exact step.

Models (--models):
  gpt   causal LM: GPT-2 small, batch 16 x 1024 (GPU); a 2-layer 128-wide GPT (kzoo's
        gpt_tiny sizes) at 8 x 128 (CPU)
  bert  masked LM (15% of positions predicted): BERT-base 64 x 128 (GPU); BERT-tiny
        16 x 128 (CPU). kzoo trains BertPretrainer (MLM + its NSP head), keras-hub
        BertMaskedLM, transformers BertForMaskedLM on the masked positions.
  --quick uses test-sized models (2 layers, 32 wide) and a few steps.

Modes:
  --device cpu (default): TensorFlow backend for kzoo and keras-hub (--backend jax to
      switch), float32; MFU is against a measured ceiling: the best float32 2048^3 matmul
      rate of the same framework, in the same process, right after the timed steps.
  --device gpu: KERAS_BACKEND=jax, mixed_bfloat16 (torch: bf16 autocast), kzoo's and the
      nanoGPT reference's GPT token table padded to a multiple of 64 rows (--vocabulary-multiple;
      "V rows" column), fused attention (see kzoo.layers.MultiHeadAttention); MFU against
      the spec-sheet dense BF16 peak of the GPU (H100/H200/A100 table in
      tools/bench/peaks.py, or --peak-tflops). The Keras workers block `import
      tensorflow`, so the run proves the GPU path needs no TensorFlow; kzoo's row then
      times the Trainer's JAX steps built without the Trainer, which imports TensorFlow
      (tools/bench/keras_peers.py says which imports). Fails at once with a message when
      no CUDA GPU is usable by JAX.

kzoo's row times the compiled steps `kzoo.train.Trainer` trains with (its
`backend_steps.train`), each call running the steps between two host syncs.

XLA MB (kzoo under JAX): the scratch memory XLA plans for the Trainer's compiled train function
(`memory_analysis().temp_size_in_bytes`: activations kept for the backward pass and
temporaries, not the weights or optimizer state); --fused-loss shows what the chunked
cross-entropy saves.

Metrics per row: step time = median of the timed steps (after the warm-up steps; on
CPU each step is timed alone and ends when its loss is on the host; on GPU the loss is
read every 10th step, --sync-every, and a window's time / 10 counts), tokens/s = batch * T /
step time, achieved FLOP/s = FLOPs/token * tokens/s with FLOPs/token = 6*N + 12*L*H*Q*T
(N as printed; tools/bench/specs.py explains it), MFU = achieved / peak (or ceiling).

Usage:
    .venv/bin/python tools/bench_train.py                       # CPU, TensorFlow backend, all peers
    .venv/bin/python tools/bench_train.py --backend jax         # CPU, kzoo and keras-hub under JAX
    .venv/bin/python tools/bench_train.py --quick --peers kzoo keras_hub
    .venv/bin/python tools/bench_train.py --backend jax --no-tensorflow --quick   # GPU mode's path, on CPU
    .venv/bin/python tools/bench_train.py --device gpu          # on a CUDA machine with jax[cuda12] + torch
    .venv/bin/python tools/bench_train.py --no-compile          # nanoGPT without torch.compile

Prints a table and writes JSON (default bench_train.json, or --output).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.bench import peaks, specs  # noqa: E402  (no framework imported here)

PEERS = ("kzoo", "keras_hub", "transformers", "nanogpt")
KERAS_PEERS = ("kzoo", "keras_hub")
MODELS = ("gpt", "bert")
RESULT_PREFIX = "BENCH_RESULT "


# --- the worker (one peer, one model, in its own process) -----------------------------------------


def _versions():
    versions = {}
    for module in ("keras", "tensorflow", "jax", "keras_hub", "torch", "transformers"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    return versions


def worker(args):
    """Builds and times one (peer, model) in this process; prints one RESULT line of JSON."""
    gpu = args.device == "gpu"
    keras_peer = args.worker in KERAS_PEERS
    without_tensorflow = gpu or args.no_tensorflow
    if keras_peer and without_tensorflow:
        from tools.bench.timing import block_tensorflow

        block_tensorflow()
    spec = specs.SIZE_SETS[args.size_set][args.model]
    batch = specs.numpy_batch(spec)
    precision = "mixed_bfloat16" if gpu else "float32"
    started = time.perf_counter()
    if keras_peer:
        from tools.bench import keras_peers

        keras_peers.environment_check(args.backend, args.device)
        if args.threads and args.backend == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        if args.worker == "kzoo":
            run, info = keras_peers.build_kzoo(spec, batch, args.backend, precision, args.xla, args.dropout,
                                               vocabulary_multiple=args.vocabulary_multiple,
                                               fused_loss=args.fused_loss, steps_per_call=args.sync_every,
                                               without_tensorflow=without_tensorflow)
        else:
            run, info = keras_peers.build_keras_hub(spec, batch, args.backend, precision, args.xla, args.dropout)
        framework = keras_peers.ceiling_framework(args.backend)
        device_name = keras_peers.device_name(args.backend)
    else:
        from tools.bench import torch_peers

        device = "cuda" if gpu else "cpu"
        if args.worker == "transformers":
            run, info = torch_peers.build_transformers(spec, batch, device, args.dropout)
        else:
            run, info = torch_peers.build_nanogpt(spec, batch, device, args.dropout, args.compile,
                                                  vocabulary_multiple=args.vocabulary_multiple)
        framework = "torch"
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        device_name = torch_peers.device_name(device)
    build_s = time.perf_counter() - started
    timing = run(args.warmup, args.steps, args.sync_every)

    tokens_per_s = spec.tokens_per_step / timing["step_s"]
    flops_per_token = specs.flops_per_token(spec)
    achieved = flops_per_token * tokens_per_s
    row = {
        "peer": args.worker, "model": args.model, "config": spec.name, "device": args.device,
        "backend": args.backend if keras_peer else "torch", "precision": precision if keras_peer else (
            "bf16 autocast" if gpu else "float32"),
        "build_s": build_s, **{k: v for k, v in timing.items() if k != "losses"},
        "first_loss": timing["losses"][0], "last_loss": timing["losses"][-1],
        "tokens_per_step": spec.tokens_per_step, "tokens_per_s": tokens_per_s,
        "flops_per_token": flops_per_token, "achieved_flops_per_s": achieved, **info,
    }
    if gpu:
        peak, matched = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else peaks.bf16_peak_tflops(
            device_name)
        row.update(device_name=device_name, peak_kind="spec dense BF16 peak", peak_source=matched,
                   peak_flops_per_s=peak * 1e12 if peak else None)
    else:
        from tools.bench.timing import matmul_ceiling

        ceiling = matmul_ceiling(framework, n=args.ceiling_size) * 1e9
        row.update(device_name=platform.processor() or platform.machine(), peak_kind="measured ceiling",
                   peak_source=f"{framework} float32 {args.ceiling_size}^3 matmul, best of 10",
                   peak_flops_per_s=ceiling)
    row["mfu"] = achieved / row["peak_flops_per_s"] if row["peak_flops_per_s"] else None
    row["threads"] = args.threads or "framework default"
    row["tensorflow_imported"] = "tensorflow" in sys.modules
    row["versions"] = _versions()
    print(RESULT_PREFIX + json.dumps(row), flush=True)


# --- the parent: runs the workers, prints the table, writes JSON -------------------------------------


def _worker_command(peer, model, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--model-name", model,
               "--device", args.device, "--backend", args.backend, "--size-set", args.size_set,
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--dropout", str(args.dropout),
               "--ceiling-size", str(args.ceiling_size), "--vocabulary-multiple", str(args.vocabulary_multiple),
               "--sync-every", str(args.sync_every)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    for flag, on in (("--xla", args.xla), ("--no-compile", not args.compile),
                     ("--no-tensorflow", args.no_tensorflow), ("--fused-loss", args.fused_loss)):
        if on:
            command.append(flag)
    if args.peak_tflops:
        command += ["--peak-tflops", str(args.peak_tflops)]
    return command


def _environment(args):
    environment = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="2")
    if args.threads:
        threads = str(args.threads)
        environment.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TF_NUM_INTRAOP_THREADS=threads,
                           TF_NUM_INTEROP_THREADS=threads)
        if args.threads == 1:
            from tools.bench.timing import single_thread_xla_flags

            environment["XLA_FLAGS"] = single_thread_xla_flags(environment)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    return environment


def _run_worker(peer, model, args):
    base = {"peer": peer, "model": model}
    if peer == "nanogpt" and model != "gpt":
        return {**base, "skipped": "nanoGPT is a causal LM only"}
    started = time.perf_counter()
    try:
        done = subprocess.run(_worker_command(peer, model, args), capture_output=True, text=True,
                              timeout=args.timeout, env=_environment(args), check=False, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-6:]
        return {**base, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    row = json.loads(lines[-1][len(RESULT_PREFIX):])
    row["process_s"] = time.perf_counter() - started
    return row


def _si(value):
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def _megabytes(value):
    return f"{value / 2 ** 20:.0f}" if value is not None else ""


def _table(rows):
    header = (f"{'model':5s} {'peer':12s} {'backend':10s} {'step ms':>9s} {'cpu ms':>8s} {'tokens/s':>10s} "
              f"{'FLOP/s':>9s} {'MFU %':>6s} {'vs':>10s} {'step/kzoo':>9s} {'first s':>8s} {'params':>11s} "
              f"{'V rows':>7s} {'XLA MB':>8s}")
    lines = [header, "-" * len(header)]
    kzoo = {(row["model"], row.get("repeat")): row["step_s"] for row in rows
            if row["peer"] == "kzoo" and "step_s" in row}
    for row in rows:
        if "step_s" not in row:
            lines.append(f"{row['model']:5s} {row['peer']:12s} {row.get('skipped') or row.get('error')}")
            continue
        peak = row.get("peak_flops_per_s")
        mfu = f"{100 * row['mfu']:.2f}" if row.get("mfu") is not None else "n/a"
        vs = (_si(peak) if peak else "no peak") + ("(c)" if row["peak_kind"] == "measured ceiling" else "")
        key = (row["model"], row.get("repeat"))
        if "ratio_to_kzoo" in row:
            ratio = f"{row['ratio_to_kzoo']:.2f}"
        else:
            ratio = f"{row['step_s'] / kzoo[key]:.2f}" if key in kzoo else "n/a"
        lines.append(
            f"{row['model']:5s} {row['peer']:12s} {row['backend']:10s} {1e3 * row['step_s']:>9.2f} "
            f"{1e3 * row['step_cpu_s']:>8.1f} "
            f"{row['tokens_per_s']:>10.0f} {_si(row['achieved_flops_per_s']):>9s} {mfu:>6s} {vs:>10s} "
            f"{ratio:>9s} {row['first_step_s']:>8.2f} {row['parameters']:>11,d} {row.get('vocabulary_rows') or '':>7} "
            f"{_megabytes(row.get('xla_temp_bytes')):>8s}")
    return "\n".join(lines)


def _summary(rows, args):
    """One row per (model, peer): medians over the repeats; `ratio_to_kzoo` is the median of
    the per-repeat step-time ratios to kzoo (paired runs, close in time)."""
    import statistics

    summary = []
    for model in args.models:
        kzoo = {row["repeat"]: row["step_s"] for row in rows
                if row["model"] == model and row["peer"] == "kzoo" and "step_s" in row}
        for peer in args.peers:
            done = [row for row in rows if row["model"] == model and row["peer"] == peer and "step_s" in row]
            if not done:
                other = next(row for row in rows if row["model"] == model and row["peer"] == peer)
                summary.append({key: other[key] for key in ("model", "peer", "skipped", "error") if key in other})
                continue
            median = {key: statistics.median(row[key] for row in done)
                      for key in ("step_s", "step_cpu_s", "first_step_s", "peak_flops_per_s")}
            spec = specs.SIZE_SETS[args.size_set][model]
            tokens_per_s = spec.tokens_per_step / median["step_s"]
            ratios = [row["step_s"] / kzoo[row["repeat"]] for row in done if row["repeat"] in kzoo]
            summary.append({
                "model": model, "peer": peer, "backend": done[0]["backend"], "repeats": len(done),
                "step_s": median["step_s"], "step_cpu_s": median["step_cpu_s"],
                "step_s_per_repeat": [row["step_s"] for row in done],
                "tokens_per_s": tokens_per_s, "achieved_flops_per_s": tokens_per_s * specs.flops_per_token(spec),
                "mfu": statistics.median(row["mfu"] for row in done), "peak_flops_per_s": median["peak_flops_per_s"],
                "peak_kind": done[0]["peak_kind"], "first_step_s": median["first_step_s"],
                "parameters": done[0]["parameters"], "vocabulary_rows": done[0].get("vocabulary_rows"),
                "xla_temp_bytes": done[0].get("xla_temp_bytes"),
                **({"ratio_to_kzoo": statistics.median(ratios), "ratios_to_kzoo": ratios} if ratios else {}),
            })
    return summary


def _model_notes(size_set, models):
    notes = [specs.FORMULA]
    for model in models:
        spec = specs.SIZE_SETS[size_set][model]
        counts = specs.parameter_counts(spec)
        notes.append(f"  {specs.describe(spec)}")
        notes.append(f"    N = {counts['N']:,.0f} ({counts['N_description']}); "
                     f"FLOPs/token = {specs.flops_per_token(spec):,.0f}")
    return "\n".join(notes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--backend", choices=("tensorflow", "jax"),
                        help="Keras backend of kzoo and keras-hub (CPU default tensorflow; GPU is always jax)")
    parser.add_argument("--quick", action="store_true", help="test-sized models and a few steps (seconds)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--warmup", type=int, help="untimed steps first (the first one compiles)")
    parser.add_argument("--steps", type=int, help="timed steps")
    parser.add_argument("--xla", action="store_true",
                        help="TensorFlow backend: compile the kzoo and keras-hub steps with XLA (jit_compile)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="run the nanoGPT peer eagerly instead of under torch.compile")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--sync-every", type=int,
                        help="read the loss (a host sync) only every this many timed steps, as a training loop "
                             "that logs every N steps; step time = window / N (default 1 on CPU: every step "
                             "timed alone; 10 on GPU, where a per-step sync idles the device while the host "
                             "dispatches the next step); --steps must be a multiple")
    parser.add_argument("--vocabulary-multiple", type=int,
                        help="GPT: round the token table of kzoo and the nanoGPT reference up to a multiple of "
                             "this many rows (the logits keep the vocabulary; keras-hub and transformers have no "
                             "such option); default 64 on GPU (50257 -> 50304), 1 on CPU")
    parser.add_argument("--fused-loss", action="store_true",
                        help="GPT: train kzoo with GPTCausalLM(fused_loss=True), the chunked cross-entropy that "
                             "never forms the (b, s, V) logits (kzoo.models.losses)")
    parser.add_argument("--no-tensorflow", action="store_true",
                        help="make `import tensorflow` fail in the kzoo/keras-hub workers (implied by --device gpu; "
                             "needs --backend jax)")
    parser.add_argument("--ceiling-size", type=int, help="n of the n^3 matmul for the CPU ceiling (2048; 512 quick)")
    parser.add_argument("--peak-tflops", type=float, help="GPU peak to use instead of the table")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per worker for every framework (OMP/MKL/TF intra-op env, "
                             "torch.set_num_threads; JAX only honours 1); default: each framework's own")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every (model, peer) this many times, interleaved, and add a table of medians")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    parser.add_argument("--output", default="bench_train.json")
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--model-name", choices=MODELS, dest="model", help=argparse.SUPPRESS)
    parser.add_argument("--size-set", choices=tuple(specs.SIZE_SETS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.peers = list(dict.fromkeys(args.peers))
    if args.device == "gpu":
        if args.backend == "tensorflow":
            parser.error("--device gpu runs kzoo and keras-hub under JAX (KERAS_BACKEND=jax); drop --backend")
        args.backend = "jax"
    args.backend = args.backend or "tensorflow"
    if args.no_tensorflow and args.backend != "jax":
        parser.error("--no-tensorflow needs --backend jax")
    if args.size_set is None:
        args.size_set = "quick" if args.quick else args.device
    warmup, steps = specs.DEFAULT_STEPS[args.size_set]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.steps = steps if args.steps is None else args.steps
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1 (the first step compiles and is never timed)")
    if args.ceiling_size is None:
        args.ceiling_size = 512 if args.size_set == "quick" else 2048
    if args.sync_every is None:
        args.sync_every = 10 if args.device == "gpu" else 1
    if args.sync_every < 1 or args.steps % args.sync_every:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of --sync-every ({args.sync_every})")
    if args.vocabulary_multiple is None:
        args.vocabulary_multiple = 64 if args.device == "gpu" else 1
    if args.vocabulary_multiple < 1:
        parser.error("--vocabulary-multiple must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.device == "gpu":
        problem = peaks.gpu_problem(sys.executable, _environment(args))
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"training throughput, {args.device} ({args.size_set} sizes), Keras backend {args.backend}, "
          f"{args.warmup} warm-up + {args.steps} timed steps, {os.cpu_count()} CPUs, load average {load_start}")
    if args.device == "cpu" and load_start and load_start[0] > (os.cpu_count() or 1) and not args.threads:
        print(f"warning: load average {load_start[0]:.1f} exceeds the {os.cpu_count()} CPUs: multi-threaded "
              "timings are unreliable (PyTorch's OpenMP pool especially: a parallel region waits for a "
              "descheduled thread); compare within one run, use --repeats, or --threads 1")
    print(_model_notes(args.size_set, args.models), flush=True)
    rows = []
    for repeat in range(args.repeats):
        for model in args.models:
            # Odd repeats run the peers in reverse order, so that a drifting machine load
            # does not always favour the same peer.
            for peer in (args.peers if repeat % 2 == 0 else args.peers[::-1]):
                rows.append({**_run_worker(peer, model, args), "repeat": repeat})
                print(_table(rows[-1:]).splitlines()[-1], flush=True)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    summary = _summary(rows, args) if args.repeats > 1 else None
    print()
    print(_table(rows))
    if summary:
        print(f"\nmedian over {args.repeats} repeats (step/kzoo: median of the per-repeat ratios)")
        print(_table(summary))
    print("MFU: against the measured float32 matmul ceiling of the row's framework (c)" if args.device == "cpu"
          else "MFU: against the spec dense BF16 peak of the GPU")
    print(f"load average at start {load_start}, at end {load_end}")
    report = {
        "device": args.device, "size_set": args.size_set, "keras_backend": args.backend,
        "precision": "mixed_bfloat16 (torch: bf16 autocast)" if args.device == "gpu" else "float32",
        "warmup_steps": args.warmup, "timed_steps": args.steps, "xla": args.xla, "nanogpt_compile": args.compile,
        "dropout": args.dropout, "vocabulary_multiple": args.vocabulary_multiple, "sync_every": args.sync_every,
        "fused_loss": args.fused_loss,
        "threads": args.threads or "framework default", "formula": specs.FORMULA,
        "models": {model: {**specs.SIZE_SETS[args.size_set][model].to_dict(),
                           "parameter_counts": specs.parameter_counts(specs.SIZE_SETS[args.size_set][model]),
                           "flops_per_token": specs.flops_per_token(specs.SIZE_SETS[args.size_set][model])}
                   for model in args.models},
        "gpu_bf16_dense_peaks_tflops": peaks.BF16_DENSE_TFLOPS, "cpus": os.cpu_count(),
        "load_average_start": load_start, "load_average_end": load_end, "repeats": args.repeats,
        "machine": platform.machine(),
        "python": platform.python_version(), "results": rows, "summary": summary,
    }
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    print(f"wrote {args.output}")
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
