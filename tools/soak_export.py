"""Serving soak: many mixed valid and invalid requests through an exported classifier in one process.

Loads a kzoo classifier SavedModel with `tf.saved_model.load` (as a server would) and sends `--requests` requests
(default 10,000), about 85% through the text signature `classify` and 15% through the tensor signature
`serving_default`, drawn from a seeded mix:

* valid: texts of random length (0-60 words, Unicode, emoji, invalid UTF-8 bytes), empty strings inside a batch,
  over-long texts (truncated at the export's `sequence_length`), valid id tensors;
* invalid: empty batches, wrong ranks (scalar, (b, 1), rank 3), wrong dtypes, a missing or unexpected input, ids
  outside the vocabulary, mismatched padding_mask shapes, rows longer than the model's positions.

Every request has an expected outcome: success (outputs of the request's batch size, finite probabilities summing
to 1) or a given error type (InvalidArgumentError, or TypeError for a missing/unexpected input). Anything else is
an UNEXPECTED error. Before the mix, a shape sweep sends one valid request of every input shape the mix can
produce (see `shape_sweep`: per-shape kernel caches fill there, not during the measurement). Resident memory
(VmRSS) is read before the first request, after the sweep, after the warm-up (`--warmup`, default 500) and at the
end, and sampled every 1,000 requests.

Exit status 1 on any unexpected error, or when RSS grew by more than `--max-growth-mb` (default 50 MB) between the
end of the warm-up and the end. The bound: a tiny model's serving state is a few MB and is allocated during the
warm-up; a leak of 5 KB per request (a retained input, output or error traceback) would add ~48 MB over 9,500
requests, while allocator fragmentation of a healthy process stays within a few MB.

Without `--export`, a tiny classifier (WordPiece vocabulary trained on generated text, 1-layer BERT) is exported
first, in a subprocess, so that the soak process only loads and serves.

Usage:
    .venv/bin/python tools/soak_export.py                                   # 10,000 requests, prints a summary
    .venv/bin/python tools/soak_export.py --requests 1000 --output soak.json
    .venv/bin/python tools/soak_export.py --export exports/classifier/1    # an existing classifier export
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = (
    "the quick brown fox jumps over lazy dog a model learns tokens from text and data transformer attention "
    "layer keras tensorflow export serving batch padding mask running runner runs ran unbelievable tokenizer "
    "vocabulary sentence piece café naïve Zürich 日本語 中文 🙂 🚀 don't it's 3.14 1,000 hello world"
).split()
ODD = ["", " ", "\t\n", "\u200b", "\u202e", "e\u0301", "\x00", "[SEP]", "[CLS]", "\U0010ffff", "\ufffd"]
INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80", b"\xe2\x82"]
TINY_SEQUENCE_LENGTH = 32
SAMPLE_EVERY = 1000


# --- the export ---------------------------------------------------------------------------------------------------

def export_tiny_classifier(export_dir, seed=0):
    """Trains a WordPiece vocabulary on generated text, builds a 1-layer BERT classifier, exports it; returns the
    version directory. Runs in the process that calls it (the soak calls it through a subprocess)."""
    import random

    import keras

    from kzoo import models, text
    from kzoo.export import export_savedmodel
    from kzoo.export.serving import ServingSettings

    rng = random.Random(seed)
    os.makedirs(export_dir, exist_ok=True)
    corpus = os.path.join(export_dir, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as file:
        for _ in range(2000):
            file.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) + "\n")
    vocab_txt = text.train_wordpiece([corpus], 400, os.path.join(export_dir, "wordpiece"), lowercase=True)
    tokenizer = text.WordPieceTokenizer.from_files(vocab_txt)
    keras.utils.set_random_seed(seed)
    backbone = models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=64, dropout=0.0, attention_dropout=0.0,
    )
    model = models.BertClassifier(backbone, num_classes=3, dropout=0.0)
    result = export_savedmodel(
        model, os.path.join(export_dir, "models"), tokenizer=tokenizer, labels=["negative", "neutral", "positive"],
        model_name="soak_classifier", version=1, settings=ServingSettings(sequence_length=TINY_SEQUENCE_LENGTH),
        tokenizer_files={"vocab.txt": vocab_txt}, warmup=False, overwrite=True,
    )
    return result.path


def export_in_subprocess(export_dir):
    """`export_tiny_classifier` in a fresh Python process; returns the version directory."""
    command = [sys.executable, os.path.abspath(__file__), "--export-only", export_dir]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    if done.returncode != 0:
        raise SystemExit(f"exporting the tiny classifier failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def _find(config, key):
    """The first value of `key` anywhere in a nested config (dicts and lists), or None."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        children = config.values()
    elif isinstance(config, list):
        children = config
    else:
        return None
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


def export_limits(path):
    """(vocabulary size, positions, number of classes) from the export's `assets.extra/kzoo_export.json`."""
    with open(os.path.join(path, "assets.extra", "kzoo_export.json"), encoding="utf-8") as file:
        metadata = json.load(file)
    if "classify" not in metadata["signatures"]:
        raise SystemExit(f"{path} has no classify signature: export a BertClassifier with its tokenizer.")
    config = metadata["model_config"]
    return int(_find(config, "vocabulary_size")), int(_find(config, "max_sequence_length")), len(metadata["labels"])


# --- requests -----------------------------------------------------------------------------------------------------

class Request:
    """One request: the signature, its inputs and the expected outcome ("ok" or an exception class)."""

    def __init__(self, kind, signature, inputs, expected):
        self.kind, self.signature, self.inputs, self.expected = kind, signature, inputs, expected


def pick(rng, items):
    """One element of the sequence `items`, drawn with the NumPy generator `rng`."""
    return items[int(rng.integers(len(items)))]


def random_text(rng, max_words=60):
    """A text of 0..max_words words, sometimes with odd characters or invalid UTF-8 bytes; bytes."""
    words = [pick(rng, WORDS) for _ in range(int(rng.integers(0, max_words + 1)))]
    if rng.random() < 0.3:
        words.insert(int(rng.integers(0, len(words) + 1)), pick(rng, ODD))
    data = " ".join(words).encode("utf-8")
    if rng.random() < 0.1:
        position = int(rng.integers(0, len(data) + 1))
        data = data[:position] + pick(rng, INVALID_UTF8) + data[position:]
    return data


def make_request(rng, limits):
    """A random request of the mix described in the module docstring."""
    import numpy as np
    import tensorflow as tf

    invalid = tf.errors.InvalidArgumentError
    vocabulary, positions, _ = limits
    kinds = ["texts"] * 50 + ["empty_strings"] * 5 + ["over_long"] * 5 + ["empty_batch"] * 5 + ["wrong_rank"] * 5 + [
        "wrong_dtype"] * 5 + ["missing_input"] * 3 + ["unexpected_input"] * 2 + ["ids"] * 8 + ["bad_ids"] * 3 + [
        "mismatched_mask"] * 2 + ["too_long"] * 2 + ["ids_int64"]
    kind = pick(rng, kinds)
    batch = int(rng.integers(1, 9))
    texts = [random_text(rng) for _ in range(batch)]
    if kind in ("texts", "empty_strings", "over_long"):
        if kind == "empty_strings":
            texts[int(rng.integers(batch))] = b""
        if kind == "over_long":
            words = int(rng.integers(200, 5000))  # 1-40 KB: far past sequence_length, truncated
            texts[int(rng.integers(batch))] = " ".join(pick(rng, WORDS) for _ in range(words)).encode()
        return Request(kind, "classify", {"text": tf.constant(texts)}, "ok")
    if kind == "empty_batch":
        return Request(kind, "classify", {"text": tf.constant([], tf.string)}, invalid)
    if kind == "wrong_rank":
        shapes = [(), (batch, 1), (1, batch, 2)]
        shape = pick(rng, shapes)
        values = np.array([texts[0]] * int(np.prod(shape)), dtype=object).reshape(shape)
        return Request(kind, "classify", {"text": tf.constant(values)}, invalid)
    if kind == "wrong_dtype":
        values = [tf.constant(rng.integers(0, 100, batch), tf.int32), tf.constant(rng.random(batch), tf.float32),
                  tf.constant(rng.random(batch) < 0.5)]
        return Request(kind, "classify", {"text": pick(rng, values)}, invalid)
    if kind == "missing_input":
        return Request(kind, "classify", {}, TypeError)
    if kind == "unexpected_input":
        return Request(kind, "classify", {"text": tf.constant(texts), "label": tf.constant(texts)}, TypeError)
    length = int(rng.integers(1, positions + 1))
    ids = rng.integers(0, vocabulary, (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    expected = "ok"
    if kind == "bad_ids":
        ids[int(rng.integers(batch)), int(rng.integers(length))] = pick(rng, [-1, vocabulary, 2**31 - 1])
        expected = invalid
    elif kind == "mismatched_mask":
        mask = np.ones((batch, length + 1), np.int32)
        expected = invalid
    elif kind == "too_long":
        ids = rng.integers(0, vocabulary, (batch, positions + int(rng.integers(1, 17)))).astype(np.int32)
        mask = np.ones_like(ids)
        expected = invalid
    inputs = {"token_ids": tf.constant(ids), "segment_ids": tf.zeros(ids.shape, tf.int32),
              "padding_mask": tf.constant(mask)}
    if kind == "ids_int64":
        inputs["token_ids"] = tf.cast(inputs["token_ids"], tf.int64)
        expected = invalid
    return Request(kind, "serving_default", inputs, expected)


def send(loaded, request, num_classes):
    """Sends `request`; returns ("success" | "expected_error" | "unexpected", detail)."""
    import numpy as np

    try:
        outputs = loaded.signatures[request.signature](**request.inputs)
    except Exception as error:  # classifying every failure is the point of the soak
        name = type(error).__name__
        if request.expected != "ok" and isinstance(error, request.expected):
            return "expected_error", name
        message = getattr(error, "message", None) or str(error)
        return "unexpected", f"{request.kind}: {name}: {message.strip()[:300]}"
    if request.expected != "ok":
        return "unexpected", f"{request.kind}: succeeded but must raise {request.expected.__name__}"
    batch = int(next(iter(request.inputs.values())).shape[0])
    probabilities = outputs["probabilities"].numpy()
    healthy = (probabilities.shape == (batch, num_classes) and np.isfinite(probabilities).all()
               and np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5))
    if not healthy:
        return "unexpected", f"{request.kind}: bad probabilities of shape {probabilities.shape}"
    return "success", request.kind


def shape_sweep(rng, limits, max_batch=8, max_words=60):
    """One valid request of every input shape the soak sends: ids of every (batch, length) through
    `serving_default` and texts of every batch size and word count through `classify`.

    Kernel libraries keep per-shape state: oneDNN (TensorFlow's default CPU kernels on recent Intel
    processors) caches a primitive for each new shape until its cache is full, which grew RSS by ~190 MB over
    5,000 random requests here, slower and slower, and by 3 MB with `TF_ENABLE_ONEDNN_OPTS=0`. Sending every
    shape before the baseline leaves that bounded cache out of the measured growth, so the bound judges what a
    request leaves behind."""
    import numpy as np
    import tensorflow as tf

    vocabulary, positions, _ = limits
    for batch in range(1, max_batch + 1):
        for length in range(1, positions + 1):
            ids = tf.constant(rng.integers(0, vocabulary, (batch, length)).astype(np.int32))
            inputs = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": tf.ones_like(ids)}
            yield Request("ids", "serving_default", inputs, "ok")
        for words in range(max_words + 1):
            texts = [" ".join(pick(rng, WORDS) for _ in range(words)).encode("utf-8")] * batch
            yield Request("texts", "classify", {"text": tf.constant(texts)}, "ok")


# --- memory -------------------------------------------------------------------------------------------------------

def rss_mb():
    """Resident memory of this process in MB: VmRSS from /proc, else the peak from getrusage (Linux: KB)."""
    gc.collect()
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --- the soak -----------------------------------------------------------------------------------------------------

def soak(path, requests, warmup, seed, max_growth_mb):
    """Loads `path`, sends the requests, returns the report dict."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the tokenizer ops the SavedModel uses

    rss_start = rss_mb()
    limits = export_limits(path)
    loaded = tf.saved_model.load(path)
    rng = np.random.default_rng(seed)
    counts = {"success": 0, "expected_error": 0, "unexpected": 0}
    by_kind, unexpected, samples = {}, [], []
    rss_before = rss_mb()
    sweep = 0
    for request in shape_sweep(np.random.default_rng(seed + 1), limits):
        outcome, detail = send(loaded, request, limits[2])
        sweep += 1
        if outcome != "success":
            unexpected.append(f"shape sweep: {detail}")
            counts["unexpected"] += 1
    rss_swept = rss_mb()
    rss_warm = None
    started = time.perf_counter()
    for index in range(requests):
        request = make_request(rng, limits)
        outcome, detail = send(loaded, request, limits[2])
        counts[outcome] += 1
        kind = by_kind.setdefault(request.kind, {"success": 0, "expected_error": 0, "unexpected": 0})
        kind[outcome] += 1
        if outcome == "unexpected" and len(unexpected) < 20:
            unexpected.append(detail)
        if index + 1 == warmup:
            rss_warm = rss_mb()
        if (index + 1) % SAMPLE_EVERY == 0:
            samples.append({"requests": index + 1, "rss_mb": round(rss_mb(), 1)})
    elapsed = time.perf_counter() - started
    rss_end = rss_mb()
    rss_warm = rss_end if rss_warm is None else rss_warm
    growth = rss_end - rss_warm
    return {
        "export": path,
        "requests": requests,
        "shape_sweep_requests": sweep,
        "warmup_requests": warmup,
        "seed": seed,
        "successes": counts["success"],
        "expected_errors": counts["expected_error"],
        "unexpected_errors": counts["unexpected"],
        "by_kind": by_kind,
        "unexpected_examples": unexpected,
        "rss_mb": {"before_load": round(rss_start, 1), "before": round(rss_before, 1),
                   "after_shape_sweep": round(rss_swept, 1), "after_warmup": round(rss_warm, 1),
                   "end": round(rss_end, 1), "samples": samples},
        "rss_growth_after_warmup_mb": round(growth, 2),
        "rss_growth_per_request_kb": round(growth * 1024 / max(requests - warmup, 1), 3),
        "max_growth_mb": max_growth_mb,
        "elapsed_s": round(elapsed, 1),
        "requests_per_s": round(requests / elapsed, 1),
        "passed": counts["unexpected"] == 0 and growth <= max_growth_mb,
    }


def print_report(report):
    rss = report["rss_mb"]
    print(f"export: {report['export']}")
    print(f"requests: {report['requests']} in {report['elapsed_s']} s ({report['requests_per_s']}/s)")
    print(f"successes: {report['successes']}  expected errors: {report['expected_errors']}  "
          f"unexpected errors: {report['unexpected_errors']}")
    for kind, counts in sorted(report["by_kind"].items()):
        print(f"  {kind:17s} {counts}")
    for detail in report["unexpected_examples"]:
        print(f"  UNEXPECTED {detail}")
    print(f"RSS MB: before loading {rss['before_load']}, before the first request {rss['before']}, after the shape "
          f"sweep ({report['shape_sweep_requests']} requests) {rss['after_shape_sweep']}, after warm-up "
          f"({report['warmup_requests']}) {rss['after_warmup']}, end {rss['end']}; "
          f"growth after warm-up {report['rss_growth_after_warmup_mb']} MB "
          f"(bound {report['max_growth_mb']} MB, {report['rss_growth_per_request_kb']} KB/request)")
    print("samples: " + ", ".join(f"{s['requests']}: {s['rss_mb']}" for s in rss["samples"]))
    print("PASSED" if report["passed"] else "FAILED")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", help="a classifier SavedModel version directory (default: export a tiny one)")
    parser.add_argument("--export-dir", help="where to write the tiny export (default: a temporary directory)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500, help="requests before the RSS baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-growth-mb", type=float, default=50.0, help="allowed RSS growth after the warm-up")
    parser.add_argument("--output", help="write the report as JSON here")
    parser.add_argument("--export-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1 or not 0 < args.warmup < args.requests:
        parser.error("need --requests >= 1 and 0 < --warmup < --requests")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.export_only:
        print(export_tiny_classifier(args.export_only))
        return 0
    with tempfile.TemporaryDirectory(prefix="kzoo_soak_") as scratch:
        path = args.export or export_in_subprocess(args.export_dir or scratch)
        report = soak(path, args.requests, args.warmup, args.seed, args.max_growth_mb)
    print_report(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
