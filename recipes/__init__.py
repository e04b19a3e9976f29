"""The recipe scripts, one per task (see README.md here). Installed with kzoo as the package `kzoo.recipes.scripts`,
so `kzoo train NAME` finds them from any directory; run one from a checkout with `python recipes/NAME.py` too."""
