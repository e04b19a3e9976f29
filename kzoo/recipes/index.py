"""Finding the recipe scripts for `kzoo train NAME` and `kzoo eval RUN_DIR`.

The recipes are the top-level `recipes/` scripts of the kzoo source tree; installing kzoo (editable or not) installs
them as the package `kzoo.recipes.scripts` (setup.py maps the folder), so `kzoo train NAME` finds them from any
directory. `KZOO_RECIPES` may name another folder of recipes (e.g. a copy you edit).
"""

import importlib.util
import os

from kzoo.train.config import ConfigError

SCRIPTS_PACKAGE = "kzoo.recipes.scripts"


def recipes_directory():
    """The folder recipes are read from: `KZOO_RECIPES`, else the installed `kzoo.recipes.scripts`."""
    configured = os.environ.get("KZOO_RECIPES")
    if configured:
        return configured
    spec = importlib.util.find_spec(SCRIPTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the recipes are not installed ({SCRIPTS_PACKAGE} is missing): reinstall kzoo "
                          "(pip install .), or set KZOO_RECIPES to a folder of recipe scripts.")
    return list(spec.submodule_search_locations)[0]


def recipe_names():
    folder = recipes_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_"))


def load_recipe(name):
    """Imports the recipe script `<recipes_directory()>/<name>.py` as a module (it has `Config`, `build`, `main`)."""
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
