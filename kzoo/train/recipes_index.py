"""Finding the recipe scripts for `kzoo train NAME` and `kzoo eval RUN_DIR`.

Recipes are the scripts in the `recipes/` folder of a kzoo checkout (the folder beside
the `kzoo` package; README's set-up installs kzoo from the checkout in editable mode).
`KZOO_RECIPES` may name another folder of recipes.
"""

import importlib.util
import os

from kzoo.train.config import ConfigError


def recipes_directory():
    configured = os.environ.get("KZOO_RECIPES")
    if configured:
        return configured
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(package_parent, "recipes")


def recipe_names():
    folder = recipes_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_"))


def load_recipe(name):
    """Imports `recipes/<name>.py` as a module."""
    names = recipe_names()
    if name not in names:
        where = recipes_directory()
        raise ConfigError(f"unknown recipe {name!r}; the recipes in {where} are: {', '.join(names) or 'none'} "
                          "(set KZOO_RECIPES to another folder of recipes).")
    path = os.path.join(recipes_directory(), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"kzoo_recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
