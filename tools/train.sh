#!/usr/bin/env bash
# The main job: set up, then run a training recipe on its offline default data.
#   bash tools/train.sh                      # gpt_pretrain, ~3 minutes on 2 CPU cores
#   bash tools/train.sh bert_classify --train.steps=500
# Ends by printing where the checkpoint, the saved model and the TensorBoard logs are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
recipe=${1:-gpt_pretrain}
shift || true
exec .venv/bin/kzoo train "$recipe" "$@"
