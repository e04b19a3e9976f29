"""The `kzoo` command line. Subcommands are thin wrappers over the library."""

import argparse
import os
import sys


def one_line(error):
    """An error's message as the one line a command prints: the lines of a longer message (e.g. a list of
    weight names after "...:") joined by "; "."""
    text = ""
    for line in filter(None, (line.strip() for line in str(error).splitlines())):
        text += (" " if text.endswith(":") else "; ") + line if text else line
    return text


def _smoke(args):
    from kzoo import smoke

    try:  # the folder is checked before training, so a bad --output-dir costs no training time
        os.makedirs(args.output_dir, exist_ok=True)
        if not os.access(args.output_dir, os.W_OK):
            raise PermissionError("not writable")
        result = smoke.run(steps=args.steps, output_dir=args.output_dir, verbose=0 if args.quiet else 1)
    except OSError as error:
        print(f"kzoo smoke: cannot write to --output-dir {args.output_dir}: {one_line(error)}", file=sys.stderr)
        return 2
    print(
        f"kzoo smoke: backend={result['backend']} parameters={result['parameters']:,} "
        f"steps={result['steps']} in {result['train_seconds']:.1f}s\n"
        f"  held-out loss {result['untrained_loss']:.3f} (untrained) -> {result['held_out_loss']:.3f}, "
        f"next-token accuracy {result['held_out_accuracy']:.1%} (chance 3.1%)\n"
        f"  saved {result['saved_model']}; reloaded outputs differ by at most "
        f"{result['reload_max_abs_difference']:.2e}"
    )
    if not result["held_out_loss"] < result["untrained_loss"]:
        print("kzoo smoke: FAILED, the loss did not fall", file=sys.stderr)
        return 1
    return 0


def _train(args):
    from kzoo.train.config import ConfigError
    from kzoo.train.recipes_index import load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except ConfigError as error:
        print(f"kzoo train: {error}", file=sys.stderr)
        return 2
    recipe.main(args.overrides)
    return 0


def _eval(args):
    """Re-evaluates the newest checkpoint of a recipe run with the config it was trained with."""
    import yaml

    from kzoo.train.config import ConfigError, apply_mapping
    from kzoo.train.recipe import run_recipe
    from kzoo.train.recipes_index import load_recipe

    config_path = os.path.join(args.run_dir, "config.yaml")
    try:
        with open(config_path, encoding="utf-8") as file:
            saved = yaml.safe_load(file)
        if saved is not None and not isinstance(saved, dict):
            raise ConfigError(f"{config_path} holds a YAML {type(saved).__name__}, not the mapping `kzoo train` "
                              "writes; pass the output directory of a `kzoo train` run.")
        saved = dict(saved or {})
        name = args.recipe or saved.pop("recipe", None) or os.path.basename(os.path.normpath(args.run_dir))
        saved.pop("recipe", None)
        recipe = load_recipe(name)
        config = recipe.Config()
        apply_mapping(config, saved)
    except FileNotFoundError:
        print(f"kzoo eval: {config_path} not found: pass the output directory of a `kzoo train` run.",
              file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        print(f"kzoo eval: cannot read {config_path}: {one_line(error)}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"kzoo eval: {error}", file=sys.stderr)
        return 2
    overrides = [f"--train.output_dir={args.run_dir}", "--train.verbose=0", *args.overrides]
    result = run_recipe(name, config, recipe.build, overrides, evaluate_only=True)
    metrics = ", ".join(f"{key} {value:.4g}" for key, value in result["eval"].items() if isinstance(value, float))
    print(f"kzoo eval: step {result['step']} of {args.run_dir}: {metrics}")
    return 0


def _layers(args):
    import kzoo.layers

    for name in kzoo.layers.__all__:
        item = getattr(kzoo.layers, name)
        summary = (item.__doc__ or "").strip().splitlines()[0]
        print(f"{name:32s} {summary}")
    return 0


def _models(args):
    from kzoo import models

    print(f"{'preset':18s} {'family':8s} {'parameters':>13s}  description")
    for preset in models.list_presets():
        count = preset.published_parameters
        if count is None:  # the sizes without a published count: counted from the config, nothing is built
            count = preset.config.parameter_count()
        print(f"{preset.name:18s} {preset.family:8s} {count:>13,d}  {preset.description}")
    return 0


def _is_keras_hub_preset(directory):
    """keras-hub presets name a Keras class in config.json; HF checkpoints a model_type."""
    import json

    try:
        with open(os.path.join(directory, "config.json")) as file:
            config = json.load(file)
    except (OSError, ValueError):
        return False  # let the importer report what is wrong with the directory
    return isinstance(config, dict) and "class_name" in config and "model_type" not in config


def _convert(args):
    from kzoo.convert import from_huggingface, from_keras_hub

    if not args.output.endswith(".keras"):
        print(f"kzoo convert: --output must end in .keras, got {args.output!r}", file=sys.stderr)
        return 2
    try:
        if _is_keras_hub_preset(args.source):
            imported = from_keras_hub(args.source, family=args.family)
        else:
            imported = from_huggingface(args.source, family=args.family, allow_pickle=args.allow_pickle)
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


def build_parser():
    from kzoo import __version__

    parser = argparse.ArgumentParser(prog="kzoo", description="kzoo: Transformer model zoo for TensorFlow/Keras.")
    parser.add_argument("--version", action="version", version=f"kzoo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    smoke = commands.add_parser("smoke", help="train a tiny decoder offline, save and reload it")
    smoke.add_argument("--steps", type=_positive_int, default=150, help="training steps (default 150)")
    smoke.add_argument("--output-dir", default="runs/smoke", help="where the .keras file goes")
    smoke.add_argument("--quiet", action="store_true", help="no progress bar")
    smoke.set_defaults(run=_smoke)

    presets = commands.add_parser("models", help="list the model presets with their parameter counts")
    presets.set_defaults(run=_models)

    convert = commands.add_parser(
        "convert", help="import a local Hugging Face checkpoint or keras-hub preset into a .keras file"
    )
    convert.add_argument(
        "source", help="checkpoint directory (HF: config.json + model.safetensors; or a keras-hub preset)"
    )
    convert.add_argument("--output", required=True, help="the .keras file to write")
    convert.add_argument("--family", choices=["bert", "gpt", "seq2seq"], help="refuse other architectures")
    convert.add_argument(
        "--allow-pickle", action="store_true", help="also read pytorch_model.bin (pickle: can run code)"
    )
    convert.set_defaults(run=_convert)

    from kzoo.text import vocabulary

    vocab = commands.add_parser("vocab", help="train a WordPiece vocab.txt or SentencePiece spiece.model")
    vocabulary.build_parser(vocab)
    vocab.set_defaults(run=vocabulary.vocab_command)

    train = commands.add_parser(
        "train", help="run a training recipe (recipes/NAME.py); `kzoo train NAME --help` lists its keys",
        add_help=False,
    )
    train.add_argument("recipe", help="recipe name, e.g. gpt_pretrain, bert_classify, seq2seq_translate")
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="--config FILE.yaml and --KEY=VALUE overrides")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="evaluate the newest checkpoint of a `kzoo train` run")
    evaluate.add_argument("run_dir", help="the run's output directory (holds config.yaml and checkpoints/)")
    evaluate.add_argument("--recipe", help="recipe name (default: recorded in config.yaml, else the folder name)")
    evaluate.add_argument("overrides", nargs=argparse.REMAINDER, help="--KEY=VALUE overrides (e.g. eval_steps)")
    evaluate.set_defaults(run=_eval)

    from kzoo.generate import cli as generate_cli

    generate_cli.register(commands)

    from kzoo.export import cli as export_cli

    export_cli.register(commands)

    listing = commands.add_parser("layers", help="list the layers of kzoo.layers")
    listing.set_defaults(run=_layers)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
