"""`kzoo convert`: import a local Hugging Face checkpoint or keras-hub preset into a .keras file."""

import os
import sys

from kzoo.cli.common import one_line


def register(commands):
    parser = commands.add_parser(
        "convert", help="import a local Hugging Face checkpoint or keras-hub preset into a .keras file"
    )
    parser.add_argument(
        "source", help="checkpoint directory (HF: config.json + model.safetensors; or a keras-hub preset)"
    )
    parser.add_argument("--output", required=True, help="the .keras file to write")
    parser.add_argument("--family", choices=["bert", "gpt", "seq2seq"], help="refuse other architectures")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="also read pytorch_model.bin (pickle: can run code)"
    )
    parser.set_defaults(run=run)


def run(args):
    from kzoo.convert import from_checkpoint_directory

    if not args.output.endswith(".keras"):
        print(f"kzoo convert: --output must end in .keras, got {args.output!r}", file=sys.stderr)
        return 2
    try:
        imported = from_checkpoint_directory(args.source, family=args.family, allow_pickle=args.allow_pickle)
    except (ValueError, OSError, ImportError) as error:  # a checkpoint kzoo cannot import: the message says why
        print(f"kzoo convert: {one_line(error)}", file=sys.stderr)
        return 2
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        imported.model.save(args.output)
    except OSError as error:
        print(f"kzoo convert: cannot write {args.output}: {error}", file=sys.stderr)
        return 2
    print(
        f"kzoo convert: {imported.hf_config.get('model_type', 'keras-hub')} checkpoint -> "
        f"{type(imported.model).__name__} "
        f"({imported.model.count_params():,} parameters) saved to {args.output}"
    )
    for name, path in sorted(imported.tokenizer_files.items()):
        print(f"  tokenizer file: {name} ({path})")
    return 0
