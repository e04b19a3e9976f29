"""Greedy generation throughput: kzoo vs keras-hub vs transformers (CPU by default).

Each measurement runs in its own subprocess (one library, one batch size), so that
imports, thread pools and memory do not leak between peers. All three models are
GPT-2 small with random weights (kzoo preset `gpt2_small`; keras-hub `GPT2Backbone`
and transformers `GPT2LMHeadModel` with the same sizes), decoding greedily with a KV
cache and never stopping early (no stop token; transformers gets
`min_new_tokens = max_new_tokens`).

Per peer and batch size the worker makes one call that includes compilation
(`first_s`: kzoo and keras-hub trace and XLA-compile their loop; transformers runs
eagerly, so its first call is a short warm-up) and then times one full call
(`run_s`); tokens/s = batch * new tokens / run_s. kzoo and keras-hub use the
TensorFlow backend with XLA (`jit_compile=True`); transformers uses PyTorch.

Usage:
    .venv/bin/python tools/bench_generate.py                 # GPT-2 small, batch 1 and 16, 32 + 256 tokens
    .venv/bin/python tools/bench_generate.py --quick         # tiny model, a few tokens (seconds)
    .venv/bin/python tools/bench_generate.py --batch-sizes 1 4 --new-tokens 64 --output bench.json

Prints a table and writes JSON (default `bench_generate.json`, or `--output`).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

PEERS = ("kzoo", "keras_hub", "transformers")
GPT2_SMALL = dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                  max_sequence_length=1024)
TINY = dict(vocabulary_size=512, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=256,
            max_sequence_length=128)


def _prompts(batch, length, vocabulary_size, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, vocabulary_size, size=(batch, length)).astype("int32")


def _kzoo(sizes, batch, prompt_length, new_tokens):
    from kzoo import models
    from kzoo.generate import generate

    model = models.GPTCausalLM(models.GPTBackbone(**sizes, dropout=0.0))
    prompts = _prompts(batch, prompt_length, sizes["vocabulary_size"])

    def call():
        out = generate(model, prompts, max_new_tokens=new_tokens, jit_compile=True)
        assert out.shape == (batch, new_tokens), out.shape
        return out

    return call, call


def _keras_hub(sizes, batch, prompt_length, new_tokens):
    import keras_hub
    import numpy as np

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=sizes["vocabulary_size"], num_layers=sizes["num_layers"], num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"], intermediate_dim=sizes["intermediate_dim"], dropout=0.0,
        max_sequence_length=sizes["max_sequence_length"],
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=True)
    total = prompt_length + new_tokens
    token_ids = np.zeros((batch, total), "int32")
    token_ids[:, :prompt_length] = _prompts(batch, prompt_length, sizes["vocabulary_size"])
    padding_mask = np.zeros((batch, total), bool)
    padding_mask[:, :prompt_length] = True
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}

    def call():
        out = model.generate(inputs, stop_token_ids=None)
        assert np.asarray(out["token_ids"]).shape == (batch, total)
        return out

    return call, call


def _transformers(sizes, batch, prompt_length, new_tokens):
    import torch
    import transformers

    config = transformers.GPT2Config(
        vocab_size=sizes["vocabulary_size"], n_layer=sizes["num_layers"], n_head=sizes["num_heads"],
        n_embd=sizes["hidden_dim"], n_inner=sizes["intermediate_dim"], n_positions=sizes["max_sequence_length"],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.tensor(_prompts(batch, prompt_length, sizes["vocabulary_size"]), dtype=torch.long)
    mask = torch.ones_like(ids)

    def run(tokens):
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=tokens,
                min_new_tokens=tokens, pad_token_id=config.eos_token_id, use_cache=True,
            )
        assert tuple(out.shape) == (batch, prompt_length + tokens), tuple(out.shape)
        return out

    return (lambda: run(min(4, new_tokens))), (lambda: run(new_tokens))


WORKERS = {"kzoo": _kzoo, "keras_hub": _keras_hub, "transformers": _transformers}


def worker(args):
    """Runs one (peer, batch) measurement in this process and prints one JSON line."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = TINY if args.quick else GPT2_SMALL
    started = time.perf_counter()
    warm, timed = WORKERS[args.worker](sizes, args.batch, args.prompt_length, args.new_tokens)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    warm()
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    timed()
    run_s = time.perf_counter() - started
    versions = {}
    for module in ("keras", "tensorflow", "keras_hub", "torch", "transformers"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    print(json.dumps({
        "peer": args.worker, "batch": args.batch, "prompt_length": args.prompt_length,
        "new_tokens": args.new_tokens, "build_s": build_s, "first_s": first_s, "run_s": run_s,
        "tokens_per_s": args.batch * args.new_tokens / run_s, "versions": versions,
    }))


def _run_worker(peer, batch, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--batch", str(batch),
               "--prompt-length", str(args.prompt_length), "--new-tokens", str(args.new_tokens)]
    if args.quick:
        command.append("--quick")
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=environment,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "batch": batch, "error": f"timed out after {args.timeout} s"}
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"peer": peer, "batch": batch, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1])
    result["process_s"] = wall
    return result


def _table(results):
    header = f"{'peer':14s} {'batch':>5s} {'tokens/s':>10s} {'run s':>8s} {'first call s':>13s} {'process s':>10s}"
    lines = [header, "-" * len(header)]
    for row in results:
        if "error" in row:
            lines.append(f"{row['peer']:14s} {row['batch']:>5d}  {row['error']}")
            continue
        lines.append(
            f"{row['peer']:14s} {row['batch']:>5d} {row['tokens_per_s']:>10.1f} {row['run_s']:>8.2f} "
            f"{row['first_s']:>13.2f} {row['process_s']:>10.1f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 8 + 8 tokens, batch 1 and 2")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--prompt-length", type=int)
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per (peer, batch) process")
    parser.add_argument("--output", default="bench_generate.json")
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prompt_length is None:
        args.prompt_length = 8 if args.quick else 32
    if args.new_tokens is None:
        args.new_tokens = 8 if args.quick else 256
    if args.worker:
        worker(args)
        return 0
    batch_sizes = args.batch_sizes or ([1, 2] if args.quick else [1, 16])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"greedy generation, {'tiny model' if args.quick else 'GPT-2 small (random weights)'}, prompt "
          f"{args.prompt_length} + {args.new_tokens} new tokens, {os.cpu_count()} CPUs, load average {load}",
          flush=True)
    results = []
    for batch in batch_sizes:
        for peer in args.peers:
            results.append(_run_worker(peer, batch, args))
            print(_table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(_table(results))
    report = {
        "model": "tiny" if args.quick else "gpt2_small", "sizes": TINY if args.quick else GPT2_SMALL,
        "prompt_length": args.prompt_length, "new_tokens": args.new_tokens, "cpus": os.cpu_count(),
        "load_average_at_start": load, "machine": platform.machine(), "python": platform.python_version(),
        "results": results,
    }
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    print(f"\nwrote {args.output}")
    return 0 if all("error" not in row for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
