"""`verify_onnx`: parity of an ONNX export with the Keras model, on random valid inputs of several shapes.

Keras (TensorFlow) and ONNX Runtime run the same inputs through every exported graph; fp32 outputs must agree
within `np.allclose` tolerances (default rtol 1e-3, atol 1e-4); int8 outputs are reported here, not judged: their
numeric drift is expected, and `kzoo.export.onnx.quality.int8_quality` judges them by the task metric instead.
`summarize` and `verdict` condense the report for printing.
"""

import os
import warnings

import numpy as np

from kzoo.export.errors import ExportError
from kzoo.export.onnx.convert import load_metadata, require_tensorflow
from kzoo.export.onnx.graphs import MODEL_FILE, export_graphs

# fp32 parity (allclose semantics: |onnx - keras| <= atol + rtol * |keras|).
PARITY_RTOL = 1e-3
PARITY_ATOL = 1e-4


class OnnxParityError(ExportError):
    """ONNX Runtime and Keras disagree beyond tolerance; `.report` holds every comparison."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def _dims(batch, length, extra):
    return {"batch": batch, "sequence": length, "decoder_sequence": length, "mask_positions": min(length, 3),
            "encoder_sequence": extra["encoder_sequence"], "past_sequence": extra["past_sequence"],
            "past_decoder_sequence": extra["past_sequence"],
            "past_sequence + sequence": extra["past_sequence"] + length}


def _random_inputs(graph_entry, backbone, batch, length, extra, rng):
    """Valid random inputs for one exported graph: ids in range, masks with random padding
    (right padding; left padding over the past for decoding graphs; with 3 rows, the last
    row of a forward pass is fully padded), float keys/values ~ N(0, 1)."""
    dims = _dims(batch, length, extra)
    vocabulary = backbone.vocabulary_size
    values = {}
    for spec in graph_entry["inputs"]:
        shape = tuple(dims[d] if isinstance(d, str) else d for d in spec["shape"])
        kind = spec["kind"]
        if kind == "token_ids":
            value = rng.integers(0, vocabulary, shape)
        elif kind == "segment_ids":
            value = rng.integers(0, max(getattr(backbone, "num_segments", 2), 1), shape)
        elif kind == "padding_mask":
            lengths = rng.integers(1, shape[1] + 1, shape[0])
            if graph_entry["file"] == MODEL_FILE and shape[0] >= 3:
                lengths[-1] = 0
            value = np.arange(shape[1])[None, :] < lengths[:, None]
        elif kind == "past_padding_mask":
            pads = rng.integers(0, extra["past_sequence"] + 1, shape[0])  # left padding inside the past
            value = np.arange(shape[1])[None, :] >= pads[:, None]
        elif kind == "position_ids":
            top = max(backbone.max_sequence_length - shape[1], 1)
            value = rng.integers(0, top, (shape[0], 1)) + np.arange(shape[1])[None, :]
        elif kind == "mask_positions":
            value = rng.integers(0, length, shape)
        else:
            value = rng.normal(0.0, 1.0, shape)
        values[spec["name"]] = value.astype(spec["dtype"])
    return values


def _compare(actual, expected, rtol, atol):
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    difference = np.abs(actual - expected)
    finite = bool(np.isfinite(actual).all())
    significant = np.abs(expected) > atol
    relative = float((difference[significant] / np.abs(expected[significant])).max()) if significant.any() else 0.0
    ok = finite and actual.shape == expected.shape and bool(np.all(difference <= atol + rtol * np.abs(expected)))
    return {"max_abs": float(difference.max()) if difference.size else 0.0, "max_rel": relative, "ok": ok,
            "finite": finite}


def verify_onnx(model, export_dir, batch_sizes=(1, 3), lengths=(1, 5, 12), rtol=PARITY_RTOL, atol=PARITY_ATOL,
                graphs=None, int8=True, seed=0, verbose=False):
    """Runs Keras (TensorFlow) and ONNX Runtime on the same random inputs and compares outputs.

    Every exported graph is checked for every batch size and length (decoding graphs also
    with a past of 4 tokens and an encoder length of 6), with random padding (a fully
    padded row in forward passes with 3 rows). The fp32 check is `np.allclose`
    semantics: `|onnx - keras| <= atol + rtol * |keras|` element-wise, and no NaN/inf.
    int8 graphs (from `quantize_onnx`) are reported (`ok` is informational) but never fail.

    Args:
        model: the Keras model that was exported (same weights).
        export_dir: the `export_onnx` output directory.
        batch_sizes, lengths: shapes to try; lengths above the model's
            `max_sequence_length` are skipped.
        rtol, atol: fp32 tolerances (default 1e-3, 1e-4).
        graphs: names of graphs to check (None: all).
        int8: bool, also report the int8 graphs that exist.
        seed: int, for the random inputs.
        verbose: bool, print one line per comparison.

    Returns:
        list of dicts, one per (graph, precision, batch, length, output): `graph`,
        `precision` ("fp32" / "int8"), `batch`, `length`, `output`, `shape`, `max_abs`,
        `max_rel` (over elements with |keras| > atol), `ok`, and for int8 logits
        `argmax_agreement` (fraction of positions whose argmax matches Keras).

    Raises:
        OnnxParityError: an fp32 output differs beyond tolerance (or is not finite); the
            message names the graph, output, shape and differences.
    """
    import onnxruntime as ort

    from kzoo.models.backbone import backbone_of

    require_tensorflow()
    metadata = load_metadata(export_dir)
    if metadata["model_class"] != type(model).__name__:
        raise ValueError(
            f"verify_onnx: {export_dir!r} holds a {metadata['model_class']} export but the model is a "
            f"{type(model).__name__}; pass the model that was exported."
        )
    _, all_graphs = export_graphs(model, decoding=True)
    functions = {graph.name: graph.function for graph in all_graphs}
    backbone = backbone_of(model)
    rng = np.random.default_rng(seed)
    extra = {"past_sequence": 4, "encoder_sequence": 6}
    report = []
    names = list(metadata["graphs"]) if graphs is None else list(graphs)
    for name in names:
        entry = metadata["graphs"][name]
        sessions = [("fp32", entry["file"])]
        if int8 and entry.get("int8_file"):
            sessions.append(("int8", entry["int8_file"]))
        sessions = [(precision, _session(ort, os.path.join(export_dir, file))) for precision, file in sessions]
        for batch in batch_sizes:
            for length in lengths:
                if length + extra["past_sequence"] > backbone.max_sequence_length:
                    continue
                feeds = _random_inputs(entry, backbone, batch, length, extra, rng)
                with warnings.catch_warnings():
                    # One-token inputs are checked on purpose; Keras warns about their size-1 softmax axis.
                    warnings.filterwarnings("ignore", message="You are using a softmax over axis")
                    expected = {key: np.asarray(value) for key, value in functions[name](
                        {key: _tensor(value) for key, value in feeds.items()}).items()}
                for precision, session in sessions:
                    output_names = [o.name for o in session.get_outputs()]
                    for output, actual in zip(output_names, session.run(output_names, feeds), strict=True):
                        row = {"graph": name, "precision": precision, "batch": batch, "length": length,
                               "output": output, "shape": list(actual.shape),
                               **_compare(actual, expected[output], rtol, atol)}
                        if precision == "int8" and "logits" in output and actual.ndim >= 2:
                            row["argmax_agreement"] = float(
                                np.mean(np.argmax(actual, -1) == np.argmax(expected[output], -1)))
                        if verbose:
                            print(_format_row(row))
                        report.append(row)
    failures = [row for row in report if row["precision"] == "fp32" and not row["ok"]]
    if failures:
        worst = max(failures, key=lambda row: row["max_abs"])
        raise OnnxParityError(
            f"verify_onnx: ONNX Runtime differs from Keras beyond rtol={rtol}, atol={atol} in {len(failures)} of "
            f"{sum(r['precision'] == 'fp32' for r in report)} fp32 comparisons; worst: graph {worst['graph']!r} "
            f"output {worst['output']!r} shape {tuple(worst['shape'])} (batch {worst['batch']}, length "
            f"{worst['length']}): max abs diff {worst['max_abs']:.3g}, max rel diff {worst['max_rel']:.3g}"
            + ("" if worst["finite"] else ", non-finite values") + f". Export dir: {export_dir!r}.",
            report,
        )
    return report


def _tensor(value):
    import tensorflow as tf

    return tf.constant(value)


def _session(ort, path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def verdict(row):
    """"ok" / "FAIL" for an fp32 row; "info" for int8 rows, whose drift is reported, not judged."""
    if row["precision"] != "fp32":
        return "info"
    return "ok" if row["ok"] else "FAIL"


def _format_row(row):
    text = (f"{row['graph']:>18} {row['precision']} b={row['batch']} s={row['length']:<3} {row['output']:<24} "
            f"max_abs={row['max_abs']:.3g} max_rel={row['max_rel']:.3g} {verdict(row)}")
    if "argmax_agreement" in row:
        text += f" argmax={row['argmax_agreement']:.3f}"
    return text


def summarize(report):
    """Per (graph, precision, output): the largest `max_abs` / `max_rel` and the smallest
    argmax agreement over all shapes, as a list of dicts (for printing or export.json)."""
    summary = {}
    for row in report:
        key = (row["graph"], row["precision"], row["output"])
        entry = summary.setdefault(key, {"graph": key[0], "precision": key[1], "output": key[2], "max_abs": 0.0,
                                         "max_rel": 0.0, "ok": True})
        entry["max_abs"] = max(entry["max_abs"], row["max_abs"])
        entry["max_rel"] = max(entry["max_rel"], row["max_rel"])
        entry["ok"] = entry["ok"] and row["ok"]
        if "argmax_agreement" in row:
            entry["argmax_agreement"] = min(entry.get("argmax_agreement", 1.0), row["argmax_agreement"])
    return list(summary.values())
