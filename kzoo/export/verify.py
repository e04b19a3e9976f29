"""Parity of an exported SavedModel with the Keras model, checked in a fresh TensorFlow-only process.

`verify_savedmodel` sends requests to the export through `reload_check.py` (a subprocess that imports neither
Keras nor kzoo) and compares every output with the same request answered in this process: the tensor-in signature
against `model(inputs)` on random inputs of several shapes (random padding included), the text signatures against
their own functions run here on the original Keras model and tokenizer. A float output passes when its largest
absolute difference is within `atol + rtol * scale`, `scale` being the output's largest magnitude (float32: 1e-5
each; logits of a few tens may then differ by a few 1e-4, the size of float32 rounding over a deep stack);
strings and integers must be equal.
"""

import dataclasses
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from kzoo.export import serving
from kzoo.export.errors import ExportError
from kzoo.models.backbone import backbone_of, position_limit

RELOAD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reload_check.py")
SHAPES = ((1, 5), (3, 17))


@dataclasses.dataclass
class Comparison:
    """One output of one request: the largest absolute difference, that difference relative to the output's
    largest magnitude (`scale`), and whether it passed (strings/ints: max_abs counts differing entries)."""

    request: str
    output: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    scale: float = 0.0


def random_tensor_requests(model, shapes=SHAPES, seed=0):
    """`{request name: inputs}` for `serving_default`: random ids, masks with random right padding."""
    rng = np.random.default_rng(seed)
    vocabulary = backbone_of(model).vocabulary_size
    limit = position_limit(model)
    requests = {}
    for index, (batch, length) in enumerate(shapes):
        length = min(length, limit) if limit else length
        lengths = rng.integers(1, length + 1, size=batch)
        lengths[0] = length
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
        inputs = {}
        for name in serving.input_names(model):
            if name.endswith("token_ids"):
                inputs[name] = rng.integers(0, vocabulary, size=(batch, length)).astype(np.int32)
            elif name.endswith("padding_mask"):
                inputs[name] = mask
            elif name == "segment_ids":
                inputs[name] = ((np.arange(length)[None, :] >= lengths[:, None] // 2) & mask.astype(bool)).astype(
                    np.int32)
                if backbone_of(model).num_segments == 1:  # RoBERTa: one segment type
                    inputs[name] = np.zeros_like(inputs[name])
            elif name == "mask_positions":
                inputs[name] = rng.integers(0, length, size=(batch, 3)).astype(np.int32)
        requests[f"serving_default#{index}"] = inputs
    return requests


def _as_numpy(value):
    value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return value


def reference_outputs(model, signatures, requests):
    """The outputs this process computes for `requests`: Keras for tensor-in, the signature functions for text."""
    functions = {signature.name: signature.function for signature in signatures}
    references = {}
    for request, inputs in requests.items():
        name = request.split("#")[0]
        if name == "serving_default":
            outputs = model({key: tf.constant(value) for key, value in inputs.items()}, training=False)
            outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
        else:
            function = functions[name]
            specs = tf.nest.flatten(function.input_signature)
            arguments = [tf.constant(inputs[spec.name], dtype=spec.dtype) for spec in specs]
            outputs = function(*arguments) if not isinstance(function.input_signature[0], dict) else function(
                {spec.name: tf.constant(inputs[spec.name]) for spec in specs})
        references[request] = {key: _as_numpy(value) for key, value in outputs.items()}
    return references


def run_fresh(export_path, requests, timeout=900):
    """Runs `requests` through `reload_check.py` in a new Python process; returns `{request: {output: array}}`."""
    with tempfile.TemporaryDirectory() as scratch:
        request_file = os.path.join(scratch, "requests.npz")
        output_file = os.path.join(scratch, "outputs.npz")
        arrays = {}
        for request, inputs in requests.items():
            for name, value in inputs.items():
                value = np.asarray(value)
                if value.dtype.kind in "OUS":
                    value = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in value.ravel()],
                                     dtype="S").reshape(value.shape)
                arrays[f"{request}/{name}"] = value
        np.savez(request_file, **arrays)
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        process = subprocess.run(
            [sys.executable, RELOAD_SCRIPT, os.fspath(export_path), request_file, output_file],
            capture_output=True, text=True, timeout=timeout, env=environment,
        )
        if process.returncode != 0:
            raise ExportError(
                f"The export at {export_path} did not load in a fresh TensorFlow process:\n{process.stderr[-3000:]}"
            )
        results = {}
        with np.load(output_file) as archive:
            for key in archive.files:
                request, name = key.split("/", 1)
                results.setdefault(request, {})[name] = archive[key]
        return results


def compare(references, results, atol=1e-5, rtol=1e-5):
    """`Comparison` rows for every reference output (a missing output or a failed request is a failure)."""
    rows = []
    for request, outputs in references.items():
        got = results.get(request, {})
        if "error" in got:
            rows.append(Comparison(request, "error: " + got["error"].item().decode()[:200], (), np.inf, np.inf, False))
            continue
        for name, expected in outputs.items():
            actual = got.get(name)
            if actual is None or np.shape(actual) != np.shape(expected):
                rows.append(Comparison(request, name, np.shape(expected), np.inf, np.inf, False))
                continue
            if expected.dtype.kind in "OSU":
                same = [a == (e.encode() if isinstance(e, str) else e) for a, e in
                        zip(np.ravel(actual).tolist(), np.ravel(expected).tolist(), strict=True)]
                wrong = float(len(same) - sum(same))
                rows.append(Comparison(request, name, expected.shape, wrong, wrong, wrong == 0))
                continue
            expected64, actual64 = expected.astype(np.float64), actual.astype(np.float64)
            difference = np.abs(actual64 - expected64)
            max_abs = float(difference.max()) if difference.size else 0.0
            scale = float(np.abs(expected64).max()) if difference.size else 0.0
            max_rel = max_abs / scale if scale > 0 else max_abs
            ok = max_abs <= atol + rtol * scale
            if expected.dtype.kind in "iub":
                ok = bool(np.array_equal(actual, expected))
            rows.append(Comparison(request, name, expected.shape, max_abs, max_rel, ok, scale))
    return rows


def format_rows(rows):
    lines = [f"{'request':<26} {'output':<16} {'shape':<14} {'max |ref|':>10} {'max abs':>10} {'rel':>10}  ok"]
    for row in rows:
        lines.append(f"{row.request:<26} {row.output:<16} {str(row.shape):<14} {row.scale:>10.3g} "
                     f"{row.max_abs:>10.2e} {row.max_rel:>10.2e}  {'yes' if row.ok else 'NO'}")
    return "\n".join(lines)


def verify_savedmodel(model, export_path, *, tokenizer=None, labels=None, settings=None, shapes=SHAPES,
                      atol=1e-5, rtol=1e-5, seed=0):
    """Checks the export at `export_path` (a version directory) against `model`, in a fresh process.

    Args:
        model: the Keras model that was exported.
        export_path: the version directory `export_savedmodel` returned.
        tokenizer, labels, settings: as given to `export_savedmodel` (the text signatures are checked with
            their example requests when a tokenizer is given).
        shapes: (batch, length) pairs for the random tensor-in requests.
        atol, rtol: float tolerance (float32 default 1e-5 each).

    Returns:
        The list of `Comparison` rows.

    Raises:
        ExportError: the export does not load in a TensorFlow-only process, or an output differs.
    """
    from kzoo.export.savedmodel import example_arrays, resolve_settings, serving_signatures
    from kzoo.models.bert.tasks import BertClassifier, BertTokenClassifier

    if isinstance(model, (BertClassifier, BertTokenClassifier)):
        labels = serving.class_labels(model, labels)
    signatures = serving_signatures(model, tokenizer, labels, resolve_settings(model, tokenizer, settings))
    requests = random_tensor_requests(model, shapes, seed)
    for signature in signatures[1:]:
        requests[signature.name] = example_arrays(signature)
    references = reference_outputs(model, signatures, requests)
    rows = compare(references, run_fresh(export_path, requests), atol=atol, rtol=rtol)
    failed = [row for row in rows if not row.ok]
    if failed:
        raise ExportError(f"The export at {export_path} differs from the Keras model:\n{format_rows(failed)}")
    return rows
