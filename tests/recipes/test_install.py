"""A non-editable install carries the recipes: `kzoo train NAME` works from any directory (issue 19).

The source tree's top-level `recipes/` scripts install as `kzoo.recipes.scripts` (setup.py); here kzoo is built
into a wheel from a copy of the source, installed into a folder of its own, and a recipe is trained from an
unrelated working directory with only that folder on the path.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.backend("tensorflow", reason="pip installs the package into a fresh environment; the "
                                                   "backend plays no part, so once is enough"), pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--model.preset=gpt_test", "--data.vocabulary_size=256", "--data.sequence_length=16",
        "--train.batch_size=4", "--train.eval_steps=1", "--train.verbose=0", "--train.steps=1"]


def _run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_non_editable_install_trains_a_recipe_from_any_directory(tmp_path):
    source, wheels, site, elsewhere = (tmp_path / name for name in ("source", "wheels", "site", "elsewhere"))
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("kzoo", "recipes"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)])
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), *map(str, wheels.glob("*.whl"))])
    assert sorted(path.name for path in (site / "kzoo" / "recipes" / "scripts").glob("*.py")) == sorted(
        path.name for path in (ROOT / "recipes").glob("*.py"))

    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "KZOO_RECIPES"}, "PYTHONPATH": str(site)}
    where = _run([sys.executable, "-c", "import kzoo.recipes.index as i; print(i.__file__, i.recipes_directory())"],
                 cwd=elsewhere, env=env).split()
    assert all(path.startswith(str(site)) for path in where), where  # the installed copy, not the checkout
    _run([sys.executable, "-m", "kzoo.cli", "train", "gpt_pretrain", *TINY, "--train.output_dir=run"],
         cwd=elsewhere, env=env)
    assert (elsewhere / "run" / "model.keras").is_file() and (elsewhere / "run" / "tokenizer").is_dir()
