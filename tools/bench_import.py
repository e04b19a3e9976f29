"""Importing a Hugging Face checkpoint: load time, peak memory and greedy ms/token, kzoo vs transformers.

Each peer runs in its own fresh subprocess, so that its peak RSS holds only its own
imports, model and buffers: kzoo's `from_huggingface` under the TensorFlow backend and
under the JAX backend, and transformers' `AutoModelForCausalLM.from_pretrained(...,
dtype=float32)`, all on the same local checkpoint directory (make one with
`tools/make_random_checkpoint.py`). Per peer:

  * `load_s`: wall time of the import call (kzoo: reading the headers, building the Keras
    model, reading and assigning every tensor, the missing/unused checks);
  * `baseline_gb`: resident memory after the libraries are imported, before loading;
  * `load_peak_gb`: peak RSS (`getrusage` max RSS) read right after the load, and its
    ratio to the float32 size of the weights (4 bytes x parameters): the memory the
    import needs. kzoo reads safetensors tensors one at a time (see
    `kzoo.convert.hf_checkpoint`) and builds the model inside
    `kzoo.models.backbone.weights_to_be_overwritten`, where a variable holds no value
    until its first assignment creates it from the checkpoint tensor (under TensorFlow
    from one aligned copy that becomes the variable's memory), so the goal is at most
    1.3x with the baseline included. TinyLlama-sized, 2 CPUs: TensorFlow 1.57x when the
    variables were made at zero and then assigned, 1.21x created by their assignment
    (JAX 1.23x and 1.12x);
  * kzoo only: `build_s` / `build_peak_gb`, the time and peak RSS until the first weight
    is assigned (building the Keras model, whose variables have no values yet),
    `build_rss_gb` / `load_rss_gb` the resident memory at that point and after the load
    (what stays), and `read_s`, the time spent reading and decoding tensors;
  * `ms_per_token`: greedy generation of `--new-tokens` tokens after a `--prompt-length`
    prompt (batch 1, KV cache, no stop token: every call makes all `--new-tokens`), one
    untimed warm-up call of the same shape first (it compiles kzoo's loop), then
    `--repeats` timed calls (default 1); the fastest call's wall time / new tokens (the
    prompt's prefill included). kzoo: `kzoo.generate` (XLA under TensorFlow, `jax.jit`
    under JAX); transformers: `generate` in PyTorch eager mode;
  * `peak_gb`: peak RSS at the end (generation included), and the greedy tokens, which
    must equal transformers' for a correct import.

Usage:
    .venv/bin/python tools/make_random_checkpoint.py /tmp/tinyllama --preset tinyllama_1_1b
    .venv/bin/python tools/bench_import.py /tmp/tinyllama --output-dir /tmp/bench_import
    .venv/bin/python tools/bench_import.py /tmp/tiny --peers kzoo-jax transformers --new-tokens 4

Prints a table and writes `bench_import.json` and `bench_import.md` into `--output-dir`.
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

PEERS = ("kzoo-tensorflow", "kzoo-jax", "transformers")
REFERENCE = "transformers"


def _status_kb(field):
    """A `/proc/self/status` memory field (e.g. "VmRSS") in kB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _gb(kb):
    return kb * 1024 / 1e9


def _peak_gb():
    """Peak resident memory of this process so far (Linux reports `ru_maxrss` in kB)."""
    return _gb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rss_gb():
    return _gb(_status_kb("VmRSS"))


def _prompt(vocabulary_size, length, seed=0):
    """A fixed random prompt (ids 3 .. vocabulary_size - 1: clear of the usual special tokens)."""
    import numpy as np

    return np.random.default_rng(seed).integers(3, vocabulary_size, size=length).tolist()


def _kzoo(directory, prompt, new_tokens, repeats):
    """Loads with `kzoo.convert.from_huggingface` and generates; returns the measurements."""
    model, result = kzoo_load(directory)
    # Imported after the load is measured: kzoo.generate imports keras_hub (for its samplers), which imports
    # TensorFlow (~0.65 GB resident) even under JAX; the import itself does not need it.
    from kzoo.generate import generate

    def run():
        return generate(model, [prompt], max_new_tokens=new_tokens)

    first_s, run_s, tokens = _warm_then_time(run, repeats)
    return {**result, "first_call_s": first_s, "run_s": run_s, "tokens": [int(t) for t in tokens[0]]}


def kzoo_load(directory):
    """`(model, measurements)` of `kzoo.convert.from_huggingface(directory)` in this process."""
    import keras

    from kzoo.convert import from_huggingface, hf_checkpoint, read_hf_checkpoint
    from kzoo.models import backbone

    weights = read_hf_checkpoint(directory).weights
    parameters = sum(math.prod(weights.shape(name)) for name in weights)
    del weights

    # Time the tensor reads, and note when the first weight is assigned: everything before it is
    # building the model.
    reads = {"seconds": 0.0, "count": 0, "first_assign": None, "peak_gb": None, "rss_gb": None}
    original_read, original_assign = hf_checkpoint.SafetensorsWeights.__getitem__, backbone.assign_weight

    def timed_read(self, name):
        started = time.perf_counter()
        value = original_read(self, name)
        reads["seconds"] += time.perf_counter() - started
        reads["count"] += 1
        return value

    def noted_assign(variable, value):
        if reads["first_assign"] is None:
            reads["first_assign"], reads["peak_gb"], reads["rss_gb"] = time.perf_counter(), _peak_gb(), _rss_gb()
        return original_assign(variable, value)

    # `hf_checkpoint.assign` looks `assign_weight` up in its module at each call.
    hf_checkpoint.SafetensorsWeights.__getitem__, backbone.assign_weight = timed_read, noted_assign
    baseline = _rss_gb()
    load_started = time.perf_counter()
    try:
        imported = from_huggingface(directory)
    finally:
        hf_checkpoint.SafetensorsWeights.__getitem__, backbone.assign_weight = original_read, original_assign
    load_s = time.perf_counter() - load_started
    return imported.model, {
        "backend": keras.backend.backend(), "parameters": parameters, "baseline_gb": baseline, "load_s": load_s,
        "load_peak_gb": _peak_gb(), "build_s": reads["first_assign"] - load_started if reads["first_assign"] else None,
        "build_peak_gb": reads["peak_gb"], "build_rss_gb": reads["rss_gb"], "load_rss_gb": _rss_gb(),
        "read_s": reads["seconds"], "tensors_read": reads["count"],
    }


def _warm_then_time(run, repeats):
    """`(first call s, fastest of `repeats` more calls s, the last call's result)`."""
    started = time.perf_counter()
    run()
    first_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return first_s, min(times), result


def _transformers(directory, prompt, new_tokens, repeats):
    """Loads with `AutoModelForCausalLM.from_pretrained(dtype=float32)` and generates."""
    import torch
    import transformers

    baseline = _rss_gb()
    started = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    load_s = time.perf_counter() - started
    load_peak = _peak_gb()
    ids = torch.tensor([prompt], dtype=torch.long)
    # No stop token, as in kzoo without a tokenizer: every row runs the full `new_tokens`. (`min_new_tokens`
    # would instead mask the end token's logit, changing the greedy choice wherever it is the argmax.)
    model.generation_config.eos_token_id = None
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

    def run():
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                max_new_tokens=new_tokens, pad_token_id=pad, use_cache=True,
            )
        if out.shape[1] != len(prompt) + new_tokens:
            raise RuntimeError(f"transformers generated {out.shape[1] - len(prompt)} tokens, not {new_tokens}")
        return out

    first_s, run_s, out = _warm_then_time(run, repeats)
    return {
        "parameters": int(model.num_parameters()), "baseline_gb": baseline, "load_s": load_s,
        "load_peak_gb": load_peak, "first_call_s": first_s, "run_s": run_s,
        "tokens": [int(t) for t in out[0, len(prompt):]], "threads": torch.get_num_threads(),
    }


def worker(args):
    """Runs one peer in this process and prints its measurements as one JSON line."""
    with open(os.path.join(args.directory, "config.json"), encoding="utf-8") as file:
        config = json.load(file)
    prompt = _prompt(config["vocab_size"], args.prompt_length)
    measure = _transformers if args.worker == REFERENCE else _kzoo
    result = measure(args.directory, prompt, args.new_tokens, args.repeats)
    result.update(peer=args.worker, peak_gb=_peak_gb(), ms_per_token=1000 * result["run_s"] / args.new_tokens)
    result["versions"] = {name: getattr(sys.modules[name], "__version__", "?")
                          for name in ("keras", "tensorflow", "jax", "torch", "transformers") if name in sys.modules}
    print(json.dumps(result))


def _environment(peer):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if peer.startswith("kzoo-"):
        environment["KERAS_BACKEND"] = peer.removeprefix("kzoo-")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
    return environment


def run_peer(peer, args):
    """Runs `peer` in a fresh subprocess; its measurements, or `{"peer", "error"}`."""
    command = [sys.executable, os.path.abspath(__file__), args.directory, "--worker", peer,
               "--prompt-length", str(args.prompt_length), "--new-tokens", str(args.new_tokens),
               "--repeats", str(args.repeats)]
    load_average, started = os.getloadavg()[0], time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False,
                              env=_environment(peer))
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        return {"peer": peer, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1])
    result["process_s"] = time.perf_counter() - started
    result["load_average"] = load_average  # 1-minute load average of the machine as the peer started
    return result


def compare(results, fp32_bytes):
    """Adds the ratios to each successful row: peak RSS / float32 weight bytes, and load time,
    ms/token and tokens against the transformers row of the same run."""
    reference = next((row for row in results if row["peer"] == REFERENCE and "error" not in row), None)
    for row in results:
        if "error" in row:
            continue
        row["load_peak_x_fp32"] = row["load_peak_gb"] * 1e9 / fp32_bytes
        row["load_peak_over_baseline_x_fp32"] = (row["load_peak_gb"] - row["baseline_gb"]) * 1e9 / fp32_bytes
        row["peak_x_fp32"] = row["peak_gb"] * 1e9 / fp32_bytes
        if reference is not None:
            row["load_s_vs_reference"] = row["load_s"] / reference["load_s"]
            row["ms_per_token_vs_reference"] = row["ms_per_token"] / reference["ms_per_token"]
            row["tokens_equal_reference"] = row["tokens"] == reference["tokens"]
    return results


def _cell(row, key, form):
    value = row.get(key)
    return "-" if value is None else format(value, form)


COLUMNS = (
    ("peer", "peer", "s"), ("load s", "load_s", ".1f"), ("build s", "build_s", ".1f"), ("read s", "read_s", ".1f"),
    ("load peak GB", "load_peak_gb", ".2f"), ("x fp32", "load_peak_x_fp32", ".2f"),
    ("(peak-base) x fp32", "load_peak_over_baseline_x_fp32", ".2f"), ("base GB", "baseline_gb", ".2f"),
    ("peak GB w/ gen", "peak_gb", ".2f"), ("x fp32 w/ gen", "peak_x_fp32", ".2f"), ("ms/token", "ms_per_token", ".1f"),
    ("first gen call s", "first_call_s", ".1f"), ("load / hf", "load_s_vs_reference", ".2f"),
    ("ms/token / hf", "ms_per_token_vs_reference", ".2f"), ("tokens = hf", "tokens_equal_reference", ""),
    ("load avg", "load_average", ".1f"),
)


NOTES = (
    "build s: from the call until the first variable is assigned (the Keras model built, its variables "
    "not yet holding values); read s: reading and decoding tensors; x fp32: peak RSS / float32 weight bytes; "
    "(peak-base): the same above the RSS after the libraries were imported; load avg: the machine's 1-minute "
    "load average as the peer started. transformers memory-maps the "
    "safetensors files, so its tensors are paged in at first use (in the warm-up generate call): its load s "
    "and load peak cover the mapping only, and its memory compares in 'peak GB w/ gen'."
)


def markdown_table(results):
    """The rows as a Markdown table (one line per peer; a failed peer shows its error)."""
    lines = ["| " + " | ".join(title for title, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in results:
        if "error" in row:
            lines.append(f"| {row['peer']} | error: {row['error']} |")
            continue
        cells = [str(row[key]) if form in ("s", "") and row.get(key) is not None else _cell(row, key, form)
                 for _, key, form in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a local Hugging Face checkpoint directory (config.json + safetensors)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="timed generate calls; the fastest counts")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per peer process")
    parser.add_argument("--output-dir", default="bench_import")
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.directory = os.path.abspath(args.directory)
    if args.worker:
        worker(args)
        return 0
    load_start = os.getloadavg()[0]
    print(f"import benchmark of {args.directory}: prompt {args.prompt_length} + {args.new_tokens} new tokens, "
          f"{os.cpu_count()} CPUs, load average {load_start:.2f}", flush=True)
    results = []
    for peer in args.peers:
        results.append(run_peer(peer, args))
        row = results[-1]
        print(f"  {peer}: " + (row["error"] if "error" in row else
                               f"load {row['load_s']:.1f} s, peak {row['load_peak_gb']:.2f} GB, "
                               f"{row['ms_per_token']:.1f} ms/token"), flush=True)
    measured = [row["parameters"] for row in results if "parameters" in row]
    fp32_bytes = 4 * measured[0] if measured else None
    if fp32_bytes:
        compare(results, fp32_bytes)
    with open(os.path.join(args.directory, "config.json"), encoding="utf-8") as file:
        config = json.load(file)
    report = {
        "directory": args.directory, "model_type": config.get("model_type"),
        "stored_dtype": config.get("torch_dtype") or config.get("dtype"), "parameters": measured[0] if measured
        else None, "fp32_bytes": fp32_bytes, "prompt_length": args.prompt_length, "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "cpus": os.cpu_count(), "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
        "machine": platform.machine(), "python": platform.python_version(), "results": results,
    }
    table = markdown_table(results)
    print()
    print(table)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "bench_import.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    heading = (f"{report['model_type']} checkpoint, {report['parameters'] or 0:,} parameters stored as "
               f"{report['stored_dtype']} ({(fp32_bytes or 0) / 1e9:.2f} GB as float32); greedy, prompt "
               f"{args.prompt_length} + {args.new_tokens} new tokens, batch 1; {os.cpu_count()} CPUs, load average "
               f"{load_start:.2f} at start, {report['load_average_end']:.2f} at end.")
    with open(os.path.join(args.output_dir, "bench_import.md"), "w", encoding="utf-8") as file:
        file.write(heading + "\n\n" + table + "\n\n" + NOTES + "\n")
    print(f"\nwrote {args.output_dir}/bench_import.json and bench_import.md")
    return 0 if all("error" not in row for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
