"""`kzoo train NAME`: run a training recipe; the recipe parses its own `--KEY=VALUE` overrides."""

import argparse
import sys


class _HelpWithRecipes(argparse.Action):
    """`kzoo train --help`: the usage and the recipe names (`kzoo train NAME --help` is the recipe's own help)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from kzoo.recipes.index import recipe_names, recipes_directory

        parser.print_help()
        print(f"\nrecipes in {recipes_directory()}: {', '.join(recipe_names()) or 'none'}")
        parser.exit()


def register(commands):
    parser = commands.add_parser(
        "train", help="run a training recipe (recipes/NAME.py); `kzoo train NAME --help` lists its keys",
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_HelpWithRecipes, help="show this help and the recipe names")
    parser.add_argument("recipe", help="recipe name, e.g. gpt_pretrain, bert_classify, seq2seq_translate")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--config FILE.yaml and --KEY=VALUE overrides")
    parser.set_defaults(run=run)


def run(args):
    from kzoo.recipes.index import load_recipe
    from kzoo.train.config import ConfigError

    try:
        recipe = load_recipe(args.recipe)
    except ConfigError as error:
        print(f"kzoo train: {error}", file=sys.stderr)
        return 2
    recipe.main(args.overrides)
    return 0
