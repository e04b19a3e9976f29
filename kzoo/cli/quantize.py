"""`kzoo quantize`: a trained model's projections quantized with Keras (`model.quantize`), written as a run directory.

Examples:
    kzoo quantize runs/gpt_pretrain --mode int8 --output runs/gpt_pretrain_int8
    kzoo generate runs/gpt_pretrain_int8 --prompt "The" --max-new-tokens 20
    kzoo quantize runs/bert_classify --mode int4 --block-size -1 --output runs/bert_int4
    kzoo export runs/bert_int4 --format savedmodel --output exports/models --verify

The output holds `model.keras` and `tokenizer/` (labels.json included), the layout of a `kzoo train` run, so
`kzoo generate`, `kzoo attention` and `kzoo export` take it as they take the source.
"""

import os
import sys

from kzoo.cli.common import one_line

EXAMPLE_SHAPE = (2, 16)  # (batch, length) of the random example whose outputs are compared


def register(commands):
    """Adds the `quantize` subcommand to `commands`."""
    parser = commands.add_parser(
        "quantize",
        help="quantize a trained model's projections (int8, int4 or float8) into a new run directory",
        description="Quantize every attention and feed-forward projection (and a task's dense head) of a model "
        "with Keras' model.quantize, and write OUTPUT/model.keras and OUTPUT/tokenizer/. Prints the file sizes and "
        "how far the outputs moved on a random example.",
    )
    parser.add_argument("source", help="a run directory (holds model.keras), a .keras file, or a Hugging Face "
                        "checkpoint / keras-hub preset directory")
    parser.add_argument("--mode", required=True, metavar="MODE",
                        help="int8 (per-channel int8 kernels: projections ~4x smaller; embeddings stay float32), "
                        "int4 (two kernel values per byte) or float8 (float8 matmuls; the file does not shrink)")
    parser.add_argument("--block-size", type=int,
                        help="int4: inputs per scale (default 128), or -1 for one scale per output unit")
    parser.add_argument("--output", required=True, help="the new run directory")
    parser.add_argument("--tokenizer-dir", help="tokenizer files to copy (default: SOURCE/tokenizer of a run)")
    parser.add_argument("--overwrite", action="store_true", help="replace the model and tokenizer in OUTPUT")
    parser.set_defaults(run=run)


def _check_arguments(args):
    """The errors found without loading anything (one line each)."""
    from kzoo.models.quantization import QUANTIZATION_MODES

    if args.mode not in QUANTIZATION_MODES:
        return f"unknown --mode {args.mode!r}; use one of {', '.join(QUANTIZATION_MODES)}."
    if args.block_size is not None and args.mode != "int4":
        return f"--block-size applies to --mode int4 only, not {args.mode}."
    if not os.path.exists(args.source):
        return f"{args.source} does not exist; pass a run directory, a .keras file or a checkpoint directory."
    if os.path.abspath(args.output) == os.path.abspath(args.source):
        return "--output is the source itself; write the quantized model to another directory."
    if os.path.isfile(args.output):
        return f"--output {args.output} is a file; pass a directory."
    if os.path.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        return f"--output {args.output} exists and is not empty; pass --overwrite or another directory."
    return None


def _outputs(model, inputs):
    """`{name: float64 array}` of the model's float outputs for `inputs`."""
    import keras
    import numpy as np

    outputs = model(inputs, training=False)
    outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
    return {name: np.asarray(keras.ops.convert_to_numpy(value), np.float64) for name, value in outputs.items()}


def _megabytes(size):
    return f"{size / 2**20:.2f} MiB"


def run(args):
    problem = _check_arguments(args)
    if problem:
        print(f"kzoo quantize: {problem}", file=sys.stderr)
        return 2

    from kzoo.export.verify import random_tensor_requests
    from kzoo.models.quantization import quantize_model
    from kzoo.recipes.outputs import RunLoadError, load_run, save_model_and_tokenizer
    from kzoo.run_directory import LABELS_FILE, RunDirectory

    try:
        model, _, files, labels = load_run(args.source, args.tokenizer_dir, checkpoints=True)
    except RunLoadError as error:
        print(f"kzoo quantize: {one_line(str(error))}", file=sys.stderr)
        return 2
    source_file = RunDirectory(args.source).model if os.path.isdir(args.source) else args.source
    before_size = os.path.getsize(source_file) if os.path.isfile(source_file) else None

    [example] = random_tensor_requests(model, shapes=(EXAMPLE_SHAPE,)).values()
    before = _outputs(model, example)
    try:
        quantize_model(model, args.mode, args.block_size)
    except ValueError as error:
        print(f"kzoo quantize: {args.source}: {one_line(str(error))}", file=sys.stderr)
        return 2
    after = _outputs(model, example)

    os.makedirs(args.output, exist_ok=True)
    written = save_model_and_tokenizer(args.output, model, files)
    if labels is not None:
        import json

        with open(os.path.join(written["tokenizer_dir"], LABELS_FILE), "w", encoding="utf-8") as handle:
            json.dump({"labels": list(labels)}, handle, indent=1)
    if not os.listdir(written["tokenizer_dir"]):  # a lone .keras source: no tokenizer/ (readers would expect files)
        os.rmdir(written["tokenizer_dir"])
    after_size = os.path.getsize(written["model"])

    print(f"kzoo quantize: {type(model).__name__} {args.source} -> {written['model']} ({args.mode})")
    if before_size is None:
        print(f"  size: {_megabytes(after_size)} (the source is a checkpoint directory, not a .keras file)")
    else:
        print(f"  size: {_megabytes(before_size)} -> {_megabytes(after_size)} ({after_size / before_size:.2f}x)")
    for name in before:
        change = float(abs(after[name] - before[name]).max())
        scale = float(abs(before[name]).max())
        print(f"  {name}: max abs change {change:.3g} (max |{name}| {scale:.3g}) on a random {EXAMPLE_SHAPE} input")
    return 0
