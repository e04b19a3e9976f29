#!/usr/bin/env bash
# The main job (for now): set up, then train a tiny kzoo decoder offline, save and reload it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/kzoo smoke "$@"
