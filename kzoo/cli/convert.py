"""`kzoo convert`: import a local Hugging Face checkpoint or keras-hub preset into a .keras file, or (with
`--to huggingface`) export a kzoo run or .keras file as a Hugging Face checkpoint directory."""

import os
import sys

from kzoo.cli.common import one_line
from kzoo.messages import warnings_as_lines


def register(commands):
    parser = commands.add_parser(
        "convert", help="import a Hugging Face checkpoint or keras-hub preset into a .keras file, or export a "
        "kzoo model back to Hugging Face (--to huggingface)",
        description="Import: `kzoo convert CHECKPOINT_DIR --output model.keras`. Export: `kzoo convert --to "
        "huggingface RUN_OR_KERAS OUT_DIR` writes config.json, model.safetensors and the tokenizer files, which "
        "transformers' from_pretrained loads.",
    )
    parser.add_argument(
        "source", help="import: checkpoint directory (HF: config.json + model.safetensors; or a keras-hub preset); "
        "export: a `kzoo train` run directory or a .keras file"
    )
    parser.add_argument("out_dir", nargs="?", help="export only: the Hugging Face checkpoint folder to write")
    parser.add_argument("--to", choices=["keras", "huggingface"], default="keras",
                        help="keras (default): import SOURCE into --output; huggingface: export SOURCE into OUT_DIR")
    parser.add_argument("--output", help="import: the .keras file to write")
    parser.add_argument("--family", choices=["bert", "gpt", "seq2seq"], help="import: refuse other architectures")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="import: also read pytorch_model.bin (pickle: can run code)"
    )
    parser.add_argument("--tokenizer-dir", help="export: tokenizer files to copy (default: SOURCE/tokenizer for a "
                        "run directory)")
    parser.set_defaults(run=run)


def _usage(message):
    print(f"kzoo convert: {message}", file=sys.stderr)
    return 2


def run(args):
    if args.to == "huggingface":
        return _export(args)
    if args.out_dir is not None or args.tokenizer_dir is not None:
        return _usage("OUT_DIR and --tokenizer-dir are for `--to huggingface`; an import writes --output X.keras")
    if not args.output:
        return _usage("pass --output X.keras (the .keras file to write), or `--to huggingface SOURCE OUT_DIR`")
    return _import(args)


def _import(args):
    from kzoo.convert import from_checkpoint_directory

    if not args.output.endswith(".keras"):
        return _usage(f"--output must end in .keras, got {args.output!r}")
    try:
        with warnings_as_lines("kzoo convert", UserWarning):  # a checkpoint part kzoo leaves out, named
            imported = from_checkpoint_directory(args.source, family=args.family, allow_pickle=args.allow_pickle)
    except (ValueError, OSError, ImportError) as error:  # a checkpoint kzoo cannot import: the message says why
        return _usage(one_line(error))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        imported.model.save(args.output)
    except OSError as error:
        return _usage(f"cannot write {args.output}: {error}")
    print(
        f"kzoo convert: {imported.hf_config.get('model_type', 'keras-hub')} checkpoint -> "
        f"{type(imported.model).__name__} "
        f"({imported.model.count_params():,} parameters) saved to {args.output}"
    )
    for name, path in sorted(imported.tokenizer_files.items()):
        print(f"  tokenizer file: {name} ({path})")
    return 0


def _export(args):
    if args.out_dir is None:
        return _usage("`--to huggingface` needs OUT_DIR: kzoo convert --to huggingface RUN_OR_KERAS OUT_DIR")
    if args.output or args.family or args.allow_pickle:
        return _usage("--output, --family and --allow-pickle are for importing; an export writes OUT_DIR")
    from kzoo.convert import to_huggingface
    from kzoo.recipes.outputs import load_run

    try:
        run = load_run(args.source, tokenizer_dir=args.tokenizer_dir)
        result = to_huggingface(run.model, args.out_dir, tokenizer_files=run.tokenizer_files, labels=run.labels)
    except (ValueError, OSError, ImportError) as error:  # a run, file or model kzoo cannot export (RunLoadError too)
        return _usage(one_line(error))
    print(f"kzoo convert: {args.source} -> {result.architecture} ({result.model_type}, {result.num_tensors} tensors, "
          f"{result.num_parameters:,} parameters) written to {result.directory}")
    if result.tokenizer_files:
        print(f"  tokenizer files: {', '.join(result.tokenizer_files)}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0
