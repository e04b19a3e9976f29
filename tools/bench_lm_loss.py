"""Memory and time of a causal LM's loss: logits + cross-entropy vs kzoo's chunked (fused) loss.

The measured function is what one training step spends on its output layer: hidden
states `(n, d)` and the tied table `(R, d)` -> weighted-mean cross-entropy against `n`
targets, and its gradients with respect to both (`jax.value_and_grad`, jitted).

Peers (each jitted alone, under `KERAS_BACKEND=jax`):
  logits     kzoo's unfused path, which is also keras-hub's and transformers':
             `TokenEmbedding(reverse=True)` logits `(n, V)`, then Keras'
             SparseCategoricalCrossentropy(from_logits=True) (float32 softmax).
  fused-C    `kzoo.models.losses.projected_cross_entropy` with chunks of C tokens
             (what `GPTCausalLM(fused_loss=True, loss_chunk_size=C)` trains with).
  torch      (with --torch) `F.linear` + `F.cross_entropy` on the logits, eager, for
             the time column only.

Columns: XLA temp = the scratch memory XLA plans for the compiled function
(`compiled.memory_analysis().temp_size_in_bytes`: every buffer that is neither an
argument nor an output, peak of the live ones), known without running it; time = median
of --repeats calls (after one warm-up) on this machine's default JAX device, skipped
with --no-run. Defaults: GPT-2 small's output layer at batch 16 x 1024 tokens in
bfloat16 (n = 16384, d = 768, V = 50257 padded to 50304).

Usage:
    KERAS_BACKEND=jax .venv/bin/python tools/bench_lm_loss.py --no-run        # memory only (seconds)
    KERAS_BACKEND=jax .venv/bin/python tools/bench_lm_loss.py --tokens 4096  # memory and time
    KERAS_BACKEND=jax .venv/bin/python tools/bench_lm_loss.py --quick         # tiny sizes, a few calls
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _inputs(args):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = -(-args.vocabulary // args.pad) * args.pad
    hidden = rng.normal(size=(args.tokens, args.hidden)).astype("float32")
    table = (0.02 * rng.normal(size=(rows, args.hidden))).astype("float32")
    targets = rng.integers(0, args.vocabulary, args.tokens).astype("int32")
    weights = np.ones(args.tokens, "float32")
    return hidden, table, targets, weights


def _keras_functions(args, targets, weights):
    """{peer: (hidden, table) -> loss} for the Keras peers, in the compute dtype of --dtype."""
    import keras
    from keras import ops

    from kzoo.layers import TokenEmbedding
    from kzoo.models.losses import projected_cross_entropy

    embedding = TokenEmbedding(args.vocabulary, args.hidden, pad_to_multiple_of=args.pad, dtype=args.dtype)
    embedding.build()
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                               reduction="mean_with_sample_weight")

    def logits_loss(hidden, table):
        with keras.StatelessScope(state_mapping=[(embedding.embeddings, table)]):
            logits = embedding(ops.cast(hidden, args.dtype), reverse=True)  # (n, V)
        return cross_entropy(targets, logits, weights)

    def fused(chunk):
        def loss(hidden, table):
            kernel = ops.transpose(ops.cast(table, args.dtype))  # (d, R), as TokenEmbedding.reverse_kernel()
            return projected_cross_entropy(ops.cast(hidden, args.dtype), kernel, targets, weights,
                                           args.vocabulary, chunk_size=chunk)[0]
        return loss

    functions = {"logits": logits_loss}
    functions.update({f"fused-{chunk}": fused(chunk) for chunk in args.chunks})
    return functions


def _measure_jax(function, hidden, table, args):
    import jax

    step = jax.jit(jax.value_and_grad(function, argnums=(0, 1)))
    started = time.perf_counter()
    compiled = step.lower(hidden, table).compile()
    row = {"compile_s": time.perf_counter() - started}
    analysis = compiled.memory_analysis()
    if analysis is not None:
        row["xla_temp_bytes"] = int(analysis.temp_size_in_bytes)
        row["xla_argument_bytes"] = int(analysis.argument_size_in_bytes)
        row["xla_output_bytes"] = int(analysis.output_size_in_bytes)
    if args.run:
        hidden, table = jax.device_put(hidden), jax.device_put(table)
        loss, _ = compiled(hidden, table)
        row["loss"] = float(loss)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            jax.block_until_ready(compiled(hidden, table))
            times.append(time.perf_counter() - started)
        row["time_s"] = statistics.median(times)
    return row


def _measure_torch(hidden, table, targets, args):
    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16 if "bfloat16" in args.dtype else torch.float32
    hidden = torch.tensor(hidden, requires_grad=True)
    table = torch.tensor(table, requires_grad=True)
    targets = torch.tensor(targets, dtype=torch.long)

    def step():
        hidden.grad = table.grad = None
        logits = F.linear(hidden.to(dtype), table.to(dtype))[:, : args.vocabulary].float()
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        return loss

    row = {"loss": float(step().detach())}
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    row["time_s"] = statistics.median(times)
    return row


def _mb(value):
    return f"{value / 2 ** 20:,.1f}" if value is not None else "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--tokens", type=int, default=16384, help="rows n (batch x sequence)")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocabulary", type=int, default=50257)
    parser.add_argument("--pad", type=int, default=64, help="table rows rounded up to a multiple of this")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                        help="compute dtype of the hidden states and the matmuls (the softmax is float32)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 4096], help="fused chunk sizes")
    parser.add_argument("--no-run", dest="run", action="store_false", help="compile and report memory only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="add the eager PyTorch row (time only)")
    parser.add_argument("--quick", action="store_true", help="n=256, d=32, V=1000, chunks 64, 2 calls")
    parser.add_argument("--output", default="bench_lm_loss.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.hidden, args.vocabulary, args.chunks, args.repeats = 256, 32, 1000, [64], 2
    import keras

    if keras.backend.backend() != "jax":
        parser.error("run it with KERAS_BACKEND=jax: the memory column is XLA's own plan")
    import jax

    hidden, table, targets, weights = _inputs(args)
    device = jax.devices()[0]
    print(f"LM loss + gradients: n={args.tokens} tokens, d={args.hidden}, V={args.vocabulary} "
          f"({table.shape[0]} table rows), {args.dtype}, JAX {jax.__version__} on {device.device_kind}")
    rows = []
    for peer, function in _keras_functions(args, targets, weights).items():
        rows.append({"peer": peer, **_measure_jax(function, hidden, table, args)})
    if args.torch and args.run:
        rows.append({"peer": "torch", **_measure_torch(hidden, table, targets, args)})
    logits_bytes = args.tokens * table.shape[0] * 4
    print(f"(one float32 (n, R) logits array: {_mb(logits_bytes)} MB)")
    print(f"{'peer':12s} {'XLA temp MB':>12s} {'vs logits':>9s} {'time ms':>9s} {'loss':>9s}")
    reference = rows[0].get("xla_temp_bytes")
    for row in rows:
        temp = row.get("xla_temp_bytes")
        ratio = f"{temp / reference:.3f}" if temp is not None and reference else "n/a"
        time_ms = f"{1e3 * row['time_s']:.1f}" if "time_s" in row else "n/a"
        loss = f"{row['loss']:.5f}" if "loss" in row else "n/a"
        print(f"{row['peer']:12s} {_mb(temp):>12s} {ratio:>9s} {time_ms:>9s} {loss:>9s}")
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump({"settings": {k: v for k, v in vars(args).items() if k != "output"},
                   "device": device.device_kind, "jax": jax.__version__, "rows": rows}, file, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
