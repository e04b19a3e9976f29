"""`kzoo eval RUN_DIR`: re-evaluate the newest checkpoint of a recipe run with the config it was trained with.

`--quantize int8` (int4, float8) evaluates it with the backbone's weights quantized after they are restored, so
the change of the task metrics under quantization shows on the run's own held-out data:

    kzoo eval runs/bert_classify                    # float32, as trained
    kzoo eval runs/bert_classify --quantize int8    # the same checkpoint, int8 weights
"""

import argparse
import os
import sys

from kzoo.cli.common import one_line


def register(commands):
    parser = commands.add_parser("eval", help="evaluate the newest checkpoint of a `kzoo train` run")
    parser.add_argument("run_dir", help="the run's output directory (holds config.yaml and checkpoints/)")
    parser.add_argument("--recipe", help="recipe name (default: recorded in config.yaml, else the folder name)")
    parser.add_argument("--quantize", metavar="MODE", default="",
                        help="evaluate with the backbone's weights quantized: int8, int4 or float8 (default: as "
                             "trained)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--KEY=VALUE overrides (e.g. eval_steps)")
    parser.set_defaults(run=run)


def _own_options(args):
    """Moves `--recipe` and `--quantize` given after RUN_DIR out of the recipe overrides (argparse's REMAINDER
    collects everything after the positional); returns an error line for a bad --quantize, else None."""
    from kzoo.recipes.adapters import QUANTIZE_MODES

    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # a recipe key is never taken for one
    own.add_argument("--recipe", default=args.recipe)
    own.add_argument("--quantize", default=args.quantize)
    known, args.overrides = own.parse_known_args(args.overrides)
    args.recipe, args.quantize = known.recipe, known.quantize
    if args.quantize not in ("", *QUANTIZE_MODES):
        return f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {args.quantize!r}."
    return None


def run(args):
    """Re-evaluates the newest checkpoint of a recipe run with the config it was trained with."""
    import yaml

    from kzoo.recipes import run_recipe
    from kzoo.recipes.adapters import check_evaluation_quantize
    from kzoo.recipes.index import load_recipe
    from kzoo.recipes.runner import config_warnings_as_lines
    from kzoo.run_directory import RunDirectory
    from kzoo.train.config import ConfigError, apply_mapping

    problem = _own_options(args)
    if problem:
        print(f"kzoo eval: {problem}", file=sys.stderr)
        return 2
    config_path = RunDirectory(args.run_dir).config
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
        with config_warnings_as_lines("kzoo eval"):  # a run recorded before a key was renamed
            apply_mapping(config, saved)
        if args.quantize:  # e.g. a QLoRA run, quantized already
            check_evaluation_quantize(getattr(config, "model", None), args.quantize)
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
    result = run_recipe(name, config, recipe.build, overrides, evaluate_only=True, quantize=args.quantize)
    metrics = ", ".join(f"{key} {value:.4g}" for key, value in result["eval"].items() if isinstance(value, float))
    weights = f" with {args.quantize} weights" if args.quantize else ""
    print(f"kzoo eval: step {result['step']} of {args.run_dir}{weights}: {metrics}")
    return 0
