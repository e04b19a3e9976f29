"""Serving latency of an exported BERT encoder: kzoo SavedModel, kzoo ONNX (fp32, int8) in ONNX Runtime,
keras-hub SavedModel and Hugging Face torch, side by side on this CPU.

All peers are BERT-base (12 layers, hidden 768, 12 heads, vocabulary 30522) with random weights, fed the same
random ids at sequence length 128 (every position real). Artifacts are prepared first, each in its own process
(kzoo: `export_savedmodel`, `export_onnx`, `quantize_onnx`; keras-hub: `BertBackbone.export`); then each peer is
timed in a fresh process that only loads its artifact: 3 warm-up calls, then the median of `--repeats` calls per
batch size. TensorFlow and ONNX Runtime use their default thread pools (all cores); torch is set to all cores.

`keras_hub_onnx` is keras-hub's SavedModel converted by the tf2onnx command line (`--saved-model`, same opset),
the route keras-hub users take to ONNX. Each row also gets its achieved GFLOP/s (`bert_flops`: the encoder's
matmul FLOPs per call) against a measured ceiling: ONNX Runtime running one fp32 MatMul (and its int8
dynamically quantized form) of the BERT feed-forward shape over the same number of rows, so a figure near 100%
says the peer is bound by this CPU's matmul speed, not by overheads.

`--accuracy-run RUN_DIR` (a finished `kzoo train bert_classify` run) adds the int8 accuracy check: the run's
held-out set scored by the Keras model, its ONNX fp32 export and the int8 one.

Usage:
    .venv/bin/python tools/bench_export.py                       # BERT-base, batch 1 and 8, seq 128
    .venv/bin/python tools/bench_export.py --quick               # a tiny BERT, a few calls (seconds)
    .venv/bin/python tools/bench_export.py --accuracy-run runs/bert_classify --output bench_export.json

Prints a table and writes JSON (default `bench_export.json`).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("kzoo_savedmodel", "kzoo_onnx_fp32", "kzoo_onnx_int8", "keras_hub_savedmodel", "keras_hub_onnx", "hf_torch")
OPSET = 17
BERT_BASE = dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                 max_sequence_length=512)
TINY = dict(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128,
            max_sequence_length=128)


def _inputs(batch, length, vocabulary_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }


def bert_flops(sizes, batch, length):
    """Multiply-add FLOPs (2 per MAC) of one BERT encoder call: per layer the Q/K/V/output projections
    (4·h²), the feed-forward (2·h·i) and the attention scores and context (2·s·h) per token, plus the pooler."""
    hidden, inner = sizes["hidden_dim"], sizes["intermediate_dim"]
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * inner + 2 * length * hidden)
    return batch * (sizes["num_layers"] * length * per_token_layer + 2 * hidden * hidden)


# --- preparing artifacts (one process each) ----------------------------------------------------------------------

def prepare_kzoo(sizes, workdir):
    import keras

    from kzoo import models
    from kzoo.export import export_onnx, export_savedmodel, quantize_onnx

    keras.utils.set_random_seed(0)
    model = models.BertBackbone(**sizes, dropout=0.0, attention_dropout=0.0)
    started = time.perf_counter()
    export_savedmodel(model, os.path.join(workdir, "kzoo_savedmodel"), model_name="bert", version=1, warmup=False)
    saved_s = time.perf_counter() - started
    started = time.perf_counter()
    export_onnx(model, os.path.join(workdir, "kzoo_onnx"))
    onnx_s = time.perf_counter() - started
    started = time.perf_counter()
    quantize_onnx(os.path.join(workdir, "kzoo_onnx"))
    int8_s = time.perf_counter() - started
    return {"savedmodel_export_s": saved_s, "onnx_export_s": onnx_s, "int8_quantize_s": int8_s}


def prepare_keras_hub(sizes, workdir):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=sizes["vocabulary_size"], num_layers=sizes["num_layers"], num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"], intermediate_dim=sizes["intermediate_dim"], dropout=0.0,
        max_sequence_length=sizes["max_sequence_length"],
    )
    started = time.perf_counter()
    saved = os.path.join(workdir, "keras_hub_savedmodel")
    backbone.export(saved, format="tf_saved_model", verbose=False)
    result = {"savedmodel_export_s": time.perf_counter() - started}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--opset", str(OPSET),
                           "--output", os.path.join(workdir, "keras_hub.onnx")], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError("tf2onnx could not convert keras-hub's SavedModel: "
                           + " | ".join(done.stderr.strip().splitlines()[-3:]))
    result["onnx_export_s"] = time.perf_counter() - started
    return result


PREPARE = {"kzoo": prepare_kzoo, "keras_hub": prepare_keras_hub}


# --- timing (one process per peer) -------------------------------------------------------------------------------

def _tf_savedmodel(path, inputs_for, renames=None):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    function = loaded.signatures["serving_default"]

    def make(batch, length):
        inputs = {(renames or {}).get(k, k): tf.constant(v) for k, v in inputs_for(batch, length).items()}
        return lambda: function(**inputs)

    return make


def time_kzoo_savedmodel(sizes, workdir):
    return _tf_savedmodel(os.path.join(workdir, "kzoo_savedmodel", "bert", "1"),
                          lambda b, s: _inputs(b, s, sizes["vocabulary_size"]))


def _ort(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _time_onnx(sizes, workdir, file_name):
    session = _ort(os.path.join(workdir, file_name))
    names = [item.name for item in session.get_inputs()]

    def make(batch, length):
        feed = {k: v for k, v in _inputs(batch, length, sizes["vocabulary_size"]).items() if k in names}
        return lambda: session.run(None, feed)

    return make


def time_kzoo_onnx_fp32(sizes, workdir):
    return _time_onnx(sizes, workdir, os.path.join("kzoo_onnx", "model.onnx"))


def time_kzoo_onnx_int8(sizes, workdir):
    return _time_onnx(sizes, workdir, os.path.join("kzoo_onnx", "model.int8.onnx"))


def time_keras_hub_onnx(sizes, workdir):
    return _time_onnx(sizes, workdir, "keras_hub.onnx")


def time_keras_hub_savedmodel(sizes, workdir):
    # keras-hub's BertBackbone takes token_ids, segment_ids and padding_mask.
    return _tf_savedmodel(os.path.join(workdir, "keras_hub_savedmodel"),
                          lambda b, s: _inputs(b, s, sizes["vocabulary_size"]))


def time_hf_torch(sizes, workdir):
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    config = transformers.BertConfig(
        vocab_size=sizes["vocabulary_size"], num_hidden_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_heads"], hidden_size=sizes["hidden_dim"],
        intermediate_size=sizes["intermediate_dim"], max_position_embeddings=sizes["max_sequence_length"],
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertModel(config).eval()

    def make(batch, length):
        inputs = _inputs(batch, length, sizes["vocabulary_size"])
        ids = torch.tensor(inputs["token_ids"], dtype=torch.long)
        segments = torch.tensor(inputs["segment_ids"], dtype=torch.long)
        mask = torch.tensor(inputs["padding_mask"], dtype=torch.long)

        def call():
            with torch.inference_mode():
                return model(input_ids=ids, token_type_ids=segments, attention_mask=mask)

        return call

    return make


TIMERS = {
    "kzoo_savedmodel": time_kzoo_savedmodel, "kzoo_onnx_fp32": time_kzoo_onnx_fp32,
    "kzoo_onnx_int8": time_kzoo_onnx_int8, "keras_hub_savedmodel": time_keras_hub_savedmodel,
    "keras_hub_onnx": time_keras_hub_onnx, "hf_torch": time_hf_torch,
}


def matmul_ceiling(sizes, workdir, batch_sizes, length, repeats):
    """GFLOP/s of ONNX Runtime on one MatMul (rows = batch·length, hidden → intermediate), fp32 and int8
    (dynamic quantization, as `quantize_onnx` applies): the most this CPU gives the encoder's matmuls."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hidden, inner = sizes["hidden_dim"], sizes["intermediate_dim"]
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(hidden, inner)).astype("float32"), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "ceiling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", inner])], [weight])
    fp32_path, int8_path = os.path.join(workdir, "ceiling.onnx"), os.path.join(workdir, "ceiling.int8.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), fp32_path)
    quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    rows = []
    for precision, path in (("fp32", fp32_path), ("int8", int8_path)):
        session = _ort(path)
        for batch in batch_sizes:
            x = np.random.default_rng(1).normal(size=(batch * length, hidden)).astype("float32")
            median, best = _median_ms(lambda session=session, x=x: session.run(None, {"x": x}), repeats)
            flops = 2 * batch * length * hidden * inner
            rows.append({"ceiling": precision, "batch": batch, "median_ms": median, "min_ms": best,
                         "gflops_per_s": flops / median / 1e6})
    return rows


def _median_ms(call, repeats):
    import statistics

    for _ in range(3):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples)


def worker(args):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = TINY if args.quick else BERT_BASE
    if args.worker.startswith("prepare_"):
        result = PREPARE[args.worker[len("prepare_"):]](sizes, args.workdir)
        print(json.dumps({"prepare": args.worker, **result}))
        return
    if args.worker == "ceiling":
        for row in matmul_ceiling(sizes, args.workdir, args.batch_sizes, args.sequence_length, args.repeats):
            print(json.dumps(row), flush=True)
        return
    started = time.perf_counter()
    make = TIMERS[args.worker](sizes, args.workdir)
    load_s = time.perf_counter() - started
    for batch in args.batch_sizes:
        median, best = _median_ms(make(batch, args.sequence_length), args.repeats)
        gflops = bert_flops(sizes, batch, args.sequence_length) / median / 1e6
        print(json.dumps({"peer": args.worker, "batch": batch, "sequence_length": args.sequence_length,
                          "median_ms": median, "min_ms": best, "gflops_per_s": gflops, "load_s": load_s,
                          "repeats": args.repeats}),
              flush=True)


def accuracy(run_dir, workdir):
    """Held-out accuracy of a bert_classify run: Keras, ONNX fp32 and ONNX int8 (same packed inputs)."""
    import numpy as np
    import yaml

    from kzoo import data
    from kzoo.export import export_onnx, quantize_onnx
    from kzoo.recipes.outputs import load_run
    from kzoo.train.config import apply_mapping
    from kzoo.recipes.index import load_recipe

    model, tokenizer, _, labels = load_run(run_dir)
    recipe = load_recipe("bert_classify")
    config = recipe.Config()
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as handle:
        saved = dict(yaml.safe_load(handle) or {})
    saved.pop("recipe", None)
    apply_mapping(config, saved)
    _, held_out = recipe.read_records(config, config.train.output_dir or run_dir)
    vocabulary = data.LabelVocabulary(labels)
    special = tokenizer.special_token_ids
    dataset = data.classification_dataset(
        held_out, tokenizer, vocabulary, sequence_length=config.data.sequence_length, cls_id=special["cls"],
        sep_id=special["sep"], pad_id=special["pad"], batch_size=64, on_unknown_label="skip",
        text_pair_key="text_pair" if config.data.text_pair_column else None)
    features, gold = [], []
    for batch, batch_labels in dataset:
        features.append({k: v.numpy().astype("int32") for k, v in batch.items()})
        gold.append(batch_labels.numpy())
    gold = np.concatenate(gold)
    keras_logits = np.concatenate([np.asarray(model(f)) for f in features])
    onnx_dir = os.path.join(workdir, "accuracy_onnx")
    export_onnx(model, onnx_dir)
    quantize_onnx(onnx_dir)
    scores = {"examples": int(gold.size), "keras": float((keras_logits.argmax(-1) == gold).mean())}
    for name, file_name in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx")):
        session = _ort(os.path.join(onnx_dir, file_name))
        names = [item.name for item in session.get_inputs()]
        logits = np.concatenate([session.run(["logits"], {k: v for k, v in f.items() if k in names})[0]
                                 for f in features])
        scores[name] = float((logits.argmax(-1) == gold).mean())
        scores[f"{name}_agreement_with_keras"] = float((logits.argmax(-1) == keras_logits.argmax(-1)).mean())
    return scores


def _run(command, timeout):
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment,
                              check=False)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout} s"
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-4:]
        return rows, f"exit {done.returncode}: " + " | ".join(tail)
    return rows, None


def _table(rows, batch_sizes):
    header = f"{'peer':22s}" + "".join(f"{'batch ' + str(b) + ' ms':>14s}" for b in batch_sizes) + f"{'load s':>9s}"
    lines = [header, "-" * len(header)]
    peers = dict.fromkeys(row["peer"] for row in rows)
    for peer in peers:
        mine = {row.get("batch"): row for row in rows if row["peer"] == peer}
        if "error" in mine.get(None, {}):
            lines.append(f"{peer:22s}  {mine[None]['error']}")
            continue
        cells = "".join(f"{mine[b]['median_ms']:>14.1f}" if b in mine else f"{'-':>14s}" for b in batch_sizes)
        load = next(iter(mine.values()))["load_s"]
        lines.append(f"{peer:22s}{cells}{load:>9.1f}")
    return "\n".join(lines)


def _efficiency_table(rows, ceiling, batch_sizes):
    """Achieved GFLOP/s per peer and batch, and its share of the matmul ceiling of the same precision."""
    limits = {(row["ceiling"], row["batch"]): row["gflops_per_s"] for row in ceiling}
    header = f"{'GFLOP/s (% of matmul ceiling)':32s}" + "".join(f"{'batch ' + str(b):>16s}" for b in batch_sizes)
    lines = [header, "-" * len(header)]
    for precision in ("fp32", "int8"):
        cells = "".join(f"{limits[(precision, b)]:>16.1f}" if (precision, b) in limits else f"{'-':>16s}"
                        for b in batch_sizes)
        lines.append(f"{'ceiling: one ' + precision + ' MatMul':32s}{cells}")
    for peer in dict.fromkeys(row["peer"] for row in rows if "gflops_per_s" in row):
        precision = "int8" if peer.endswith("int8") else "fp32"
        cells = ""
        for batch in batch_sizes:
            row = next((r for r in rows if r["peer"] == peer and r.get("batch") == batch), None)
            limit = limits.get((precision, batch))
            if row is None:
                cells += f"{'-':>16s}"
            else:
                share = f" ({100 * row['gflops_per_s'] / limit:.0f}%)" if limit else ""
                cells += f"{row['gflops_per_s']:>10.1f}{share:>6s}"
        lines.append(f"{peer:32s}{cells}")
    return "\n".join(lines)


def _processor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny BERT, 3 repeats (a smoke run)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--accuracy-run", help="a finished bert_classify run directory (int8 accuracy check)")
    parser.add_argument("--workdir", help="where artifacts go (default: a temporary directory)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    parser.add_argument("--output", default="bench_export.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 20)
    if args.worker:
        worker(args)
        return 0
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="kzoo-bench-export-")
        args.workdir = scratch.name
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"BERT {'tiny' if args.quick else 'base'} encoder, sequence {args.sequence_length}, batch "
          f"{args.batch_sizes}, {os.cpu_count()} CPUs, load average {load}", flush=True)
    base = [sys.executable, os.path.abspath(__file__), "--workdir", args.workdir, "--repeats", str(args.repeats),
            "--sequence-length", str(args.sequence_length), "--batch-sizes", *map(str, args.batch_sizes)]
    if args.quick:
        base.append("--quick")
    prepared, rows = {}, []
    needed = {"kzoo"} if any(p.startswith("kzoo") for p in args.peers) else set()
    needed |= {"keras_hub"} if "keras_hub_savedmodel" in args.peers else set()
    failed = set()
    for kind in sorted(needed):
        result, error = _run([*base, "--worker", f"prepare_{kind}"], args.timeout)
        prepared[kind] = result[-1] if result else {"error": error}
        if error:
            failed.add(kind)
            print(f"prepare {kind}: {error}", flush=True)
        else:
            print(f"prepare {kind}: " + ", ".join(f"{k} {v:.1f}" for k, v in result[-1].items()
                                                 if isinstance(v, float)), flush=True)
    for peer in args.peers:
        if any(peer.startswith(kind) for kind in failed):
            rows.append({"peer": peer, "error": "its artifact could not be prepared"})
            continue
        result, error = _run([*base, "--worker", peer], args.timeout)
        rows.extend(result)
        if error:
            rows.append({"peer": peer, "error": error})
        print(_table([row for row in rows if row["peer"] == peer], args.batch_sizes).splitlines()[-1], flush=True)
    ceiling, error = _run([*base, "--worker", "ceiling"], args.timeout)
    if error:
        print(f"matmul ceiling: {error}", flush=True)
    print()
    print(_table(rows, args.batch_sizes))
    print()
    print(_efficiency_table(rows, ceiling, args.batch_sizes))
    report = {"model": "tiny" if args.quick else "bert_base", "sizes": TINY if args.quick else BERT_BASE,
              "sequence_length": args.sequence_length, "batch_sizes": args.batch_sizes, "cpus": os.cpu_count(),
              "load_average_at_start": load, "machine": platform.machine(), "processor": _processor(),
              "prepared": prepared, "results": rows, "matmul_ceiling": ceiling}
    if args.accuracy_run:
        report["accuracy"] = accuracy(args.accuracy_run, args.workdir)
        print("\nint8 accuracy check on", args.accuracy_run, json.dumps(report["accuracy"]))
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nwrote {args.output}")
    if scratch is not None:
        scratch.cleanup()
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
