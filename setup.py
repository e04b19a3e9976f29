"""Packaging details setup.cfg cannot express: the top-level recipes/ folder installs as `kzoo.recipes.scripts`.

The recipe scripts stay readable at the top of the source tree (where the README points), and an installed kzoo,
editable or not, still finds them: `kzoo train NAME` works from any directory (kzoo.recipes.index).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["kzoo", "kzoo.*"]), "kzoo.recipes.scripts"],
    package_dir={"kzoo.recipes.scripts": "recipes"},
    package_data={"kzoo.recipes.scripts": ["README.md"]},
)
