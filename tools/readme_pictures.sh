#!/usr/bin/env bash
# Regenerates the README's picture (docs/images/attention_gpt_pretrain.png) from the default recipe: trains
# gpt_pretrain with its defaults into a fresh temporary folder (~3 minutes on 2 CPU cores), then draws its last
# layer's attention for one sentence with `kzoo attention`. Pass a finished gpt_pretrain run folder to skip training:
#   bash tools/readme_pictures.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
run=${1:-}
if [ -z "$run" ]; then
  run=$(mktemp -d)/gpt_pretrain
  .venv/bin/kzoo train gpt_pretrain --train.output_dir="$run"
fi
maps=$(mktemp -d)
.venv/bin/kzoo attention "$run" --text "Return a new list of the items in the file, sorted by their key." \
  --layers -1 --output "$maps"
mkdir -p docs/images
cp "$maps"/self_attention_layer_*.png docs/images/attention_gpt_pretrain.png
echo "wrote docs/images/attention_gpt_pretrain.png (the page to explore it: $maps/attention.html)"
