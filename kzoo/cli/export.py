"""`kzoo export`: a trained model (a recipe's run directory or a .keras file) as a SavedModel or ONNX.

Examples:
    kzoo export runs/bert_classify --format savedmodel --output exports/models --name sentiment --verify
    kzoo export runs/gpt_pretrain --format savedmodel --output exports/models --max-new-tokens 48
    kzoo export runs/bert_classify --format onnx --output exports/onnx/sentiment --int8 --verify
    kzoo export model.keras --format onnx --output out --int8 --verify --eval-examples runs/x/heldout.npz

ONNX `--int8 --verify` is a gate: the int8 graphs are scored against the fp32 graphs with the task metric (accuracy,
entity F1, exact span match, masked-token accuracy; greedy token agreement for generation) on the run's held-out
sample (`heldout.npz`, written by `kzoo train`) or `--eval-examples`; more than `--int8-max-drop` points lost
(default 1) prints the figures and exits with status 2. Without a held-out sample (a lone .keras file) the int8
predictions are compared with the fp32 ones on random inputs, and the report says so.
"""

import argparse
import os
import sys


def register(commands):
    """Adds the `export` subcommand to `commands`."""
    parser = commands.add_parser(
        "export",
        help="export a trained model as a TF Serving SavedModel or an ONNX model",
        description="Export a kzoo model. SOURCE is a `kzoo train` output directory (model.keras and tokenizer/) "
        "or a .keras file (add --tokenizer-dir for the text signatures). ONNX --int8 --verify judges the int8 graphs "
        "by the task metric (accuracy, entity F1, exact span match, masked-token accuracy; greedy token agreement "
        "with fp32 for generation) on the run's held-out sample (heldout.npz) or --eval-examples, and exits with "
        "status 2 when they lose more than --int8-max-drop points against the fp32 graphs; without a sample, int8 "
        "predictions are compared with fp32 ones on random inputs (the report says which).",
    )
    parser.add_argument("source", help="a run directory (holds model.keras) or a .keras file")
    parser.add_argument("--format", choices=["savedmodel", "onnx"], default="savedmodel", help="default savedmodel")
    parser.add_argument("--output", required=True,
                        help="savedmodel: the model base directory (writes OUTPUT/NAME/VERSION); onnx: a directory")
    parser.add_argument("--tokenizer-dir", help="tokenizer files (default: SOURCE/tokenizer for a run directory)")
    parser.add_argument("--labels", help="labels.json of a classifier or tagger (default: in the tokenizer folder)")
    parser.add_argument("--verify", action="store_true",
                        help="compare the export with the Keras model on random and example inputs; fail on drift")
    saved = parser.add_argument_group("savedmodel")
    saved.add_argument("--name", help="TF Serving model name (default: the model class in lower case)")
    saved.add_argument("--version", type=int, help="version directory (default: the next free number)")
    saved.add_argument("--sequence-length", type=int, default=128, help="sub-tokens per text (default 128)")
    saved.add_argument("--max-length", type=int, dest="old_max_length", help=argparse.SUPPRESS)  # its old name
    saved.add_argument("--max-new-tokens", type=int, help="generation limit (default 64, or half a small context)")
    saved.add_argument("--temperature", type=float, default=0.0, help="`generate` temperature (default 0: greedy)")
    saved.add_argument("--top-p", type=float, default=1.0, help="`generate` nucleus mass (default 1.0)")
    saved.add_argument("--decoder-start-id", type=int, help="seq2seq first decoder token (default: the pad id)")
    saved.add_argument("--no-warmup", action="store_true", help="do not write assets.extra warm-up requests")
    saved.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    onnx = parser.add_argument_group("onnx")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, 13-18 (default 17)")
    onnx.add_argument("--no-decoding", action="store_true",
                      help="GPT/seq2seq: only the forward graph, not the decoder-with-past graphs")
    onnx.add_argument("--int8", action="store_true",
                      help="also write int8 dynamically quantized graphs (with --verify: judged by the task metric)")
    onnx.add_argument("--int8-per-channel", action="store_true", help="int8 with one scale per output channel")
    onnx.add_argument("--int8-max-drop", type=float, metavar="POINTS",
                      help="with --int8 --verify: fail (status 2) when the int8 graphs' task metric on held-out "
                      "examples is more than POINTS percentage points below the fp32 graphs' (default 1)")
    onnx.add_argument("--eval-examples", metavar="FILE.npz",
                      help="with --int8 --verify: the held-out sample to score (default: SOURCE/heldout.npz of a run "
                      "directory; none: int8 vs fp32 agreement on random inputs)")
    onnx.add_argument("--verify-rtol", type=float, default=1e-3, help="ONNX --verify rtol (default 1e-3)")
    onnx.add_argument("--verify-atol", type=float, default=1e-4, help="ONNX --verify atol (default 1e-4)")
    parser.set_defaults(run=run)


def _savedmodel(args, model, tokenizer, files, labels):
    from kzoo.export.savedmodel import export_savedmodel
    from kzoo.export.serving import ServingSettings

    settings = ServingSettings(
        sequence_length=args.sequence_length, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_p=args.top_p, decoder_start_id=args.decoder_start_id,
    )
    result = export_savedmodel(
        model, args.output, tokenizer=tokenizer, labels=labels, model_name=args.name, version=args.version,
        settings=settings, tokenizer_files=files, warmup=not args.no_warmup, overwrite=args.overwrite,
    )
    print(f"kzoo export: {type(model).__name__} -> {result.path}")
    for name, doc in result.signatures.items():
        print(f"  signature {name}: {doc}")
    if args.verify:
        from kzoo.export.verify import format_rows, verify_savedmodel

        rows = verify_savedmodel(model, result.path, tokenizer=tokenizer, labels=labels, settings=settings)
        print("verify (fresh TensorFlow-only process vs Keras):\n" + format_rows(rows))
    base = os.path.abspath(args.output)
    print(f"serve: tensorflow_model_server --rest_api_port=8501 --model_name={result.model_name} "
          f"--model_base_path={os.path.join(base, result.model_name)} --enable_model_warmup=true")
    return 0


def _held_out(args):
    """(HeldoutSample or None, its name) for the int8 gate: --eval-examples, else SOURCE/heldout.npz of a run."""
    from kzoo.recipes.heldout import load_heldout_sample
    from kzoo.run_directory import RunDirectory

    path = args.eval_examples
    if path is None and os.path.isdir(args.source) and os.path.isfile(RunDirectory(args.source).heldout):
        path = RunDirectory(args.source).heldout
    if path is None:
        return None, None
    if not os.path.isfile(path):
        raise ValueError(f"--eval-examples {path} does not exist; pass the heldout.npz of a `kzoo train` run.")
    return load_heldout_sample(path), path


def _onnx(args, model, tokenizer, files, labels):
    import math

    from kzoo.export import onnx as onnx_export

    max_drop = onnx_export.DEFAULT_MAX_DROP if args.int8_max_drop is None else args.int8_max_drop
    if not math.isfinite(max_drop):
        raise ValueError(f"--int8-max-drop must be a finite number of points, got {args.int8_max_drop}.")
    held_out = _held_out(args) if args.int8 and args.verify else (None, None)
    metadata = onnx_export.export_onnx(model, args.output, opset=args.opset, decoding=not args.no_decoding,
                                       labels=labels)
    print(f"kzoo export: {type(model).__name__} -> {args.output} (opset {metadata['opset']}, "
          f"tf2onnx {metadata['tf2onnx_version']})")
    for name, graph in metadata["graphs"].items():
        inputs = ", ".join(item if isinstance(item, str) else str(item.get("name", item)) for item in graph["inputs"])
        outputs = ", ".join(item if isinstance(item, str) else str(item.get("name", item)) for item in graph["outputs"])
        print(f"  {name}: {graph['file']}  inputs {inputs}  outputs {outputs}")
    if "labels" in metadata:
        print(f"  labels: {onnx_export.LABELS_FILE} ({len(metadata['labels'])} names)")
    if args.int8:
        for name, path in onnx_export.quantize_onnx(args.output, per_channel=args.int8_per_channel).items():
            print(f"  int8 {name}: {path}")
    if args.verify:
        report = onnx_export.verify_onnx(model, args.output, rtol=args.verify_rtol, atol=args.verify_atol)
        print("verify (ONNX Runtime vs Keras, worst over shapes):")
        for row in onnx_export.summarize(report):
            agreement = f" argmax agreement {row['argmax_agreement']:.3f}" if "argmax_agreement" in row else ""
            print(f"  {row['graph']:>18} {row['precision']} {row['output']:<26} max abs {row['max_abs']:.2e} "
                  f"max rel {row['max_rel']:.2e} {onnx_export.verdict(row)}{agreement}")
    if tokenizer is not None and files:
        import shutil

        for name, path in files.items():
            shutil.copy(path, os.path.join(args.output, name))
        print(f"  tokenizer files copied beside the graphs: {', '.join(sorted(files))}")
    if args.verify and args.int8:  # the int8 gate: last, so a failure leaves a complete export to inspect
        sample, name = held_out
        quality = onnx_export.int8_quality(args.output, sample, max_drop=max_drop, sample_name=name,
                                           decoder_start_id=args.decoder_start_id)
        print("\n".join(onnx_export.format_quality(quality)))
        if not quality["passed"]:
            print(f"kzoo export: {quality['reason']}", file=sys.stderr)
            return 2
    return 0


def run(args):
    import warnings

    from kzoo.export.errors import ExportError, ExportWarning
    from kzoo.recipes.outputs import RunLoadError, load_run

    if args.old_max_length is not None:
        print("kzoo export: warning: --max-length is now --sequence-length; the old name will stop working in the "
              "next release.", file=sys.stderr)
        args.sequence_length = args.old_max_length
    if (args.int8_max_drop is not None or args.eval_examples) and not (args.format == "onnx" and args.int8
                                                                       and args.verify):
        print("kzoo export: --int8-max-drop and --eval-examples set the ONNX int8 quality gate; add --format onnx "
              "--int8 --verify.", file=sys.stderr)
        return 2
    try:
        model, tokenizer, files, labels = load_run(args.source, args.tokenizer_dir, args.labels)
        export = _savedmodel if args.format == "savedmodel" else _onnx
        with warnings.catch_warnings(record=True) as adjusted:
            warnings.simplefilter("always", ExportWarning)
            try:
                return export(args, model, tokenizer, files, labels)
            finally:
                for warning in adjusted:
                    if issubclass(warning.category, ExportWarning):
                        print(f"kzoo export: warning: {warning.message}", file=sys.stderr)
                    else:
                        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    except (RunLoadError, ExportError, ValueError) as error:
        print(f"kzoo export: {error}", file=sys.stderr)
        return 2

