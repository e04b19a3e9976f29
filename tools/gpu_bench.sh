#!/usr/bin/env bash
# The GPU rows of the training-speed benchmark, as ONE command on a CUDA machine that has JAX and
# PyTorch but no TensorFlow (the lent H100/H200 machines: Python 3.12, jax[cuda], torch, transformers).
#
#   bash tools/gpu_bench.sh --download-wheels   # here, once: keras, keras-hub and what that machine lacks -> .whl/
#   bash tools/gpu_bench.sh                     # there, with .whl/ beside the checkout (device tool: carry .whl)
#
# It runs, each under its own time limit so that the whole stays inside ten minutes:
#   1. tools/bench_train.py --device gpu --models gpt: GPT-2 small 16 x 1024, bf16, kzoo vs keras-hub vs
#      transformers vs the nanoGPT-style torch.compile reference, each in its own process; kzoo's row times
#      the JAX train function kzoo.train.Trainer trains with (JaxSteps, 10 steps per call, state donated),
#      built without the Trainer, whose module imports TensorFlow (tools/bench/keras_peers.py);
#   2. the same for kzoo alone with --fused-loss (the chunked cross-entropy), for the A/B;
#   3. tools/bench_lm_loss.py: the output layer alone, logits vs fused, XLA memory and time, torch beside.
# Results land in $OUT (the device tool's folder) or /tmp/gpu_bench: JSON and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(keras==3.15.1 keras-hub==0.32.0 namex optree kagglehub==1.0.2 kagglesdk==0.1.28)

if [ "${1:-}" = "--download-wheels" ]; then
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
fi

ls .whl/*.whl >/dev/null 2>&1 || { echo "no .whl/: run 'bash tools/gpu_bench.sh --download-wheels' first" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu_bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c 'import jax, torch, keras, keras_hub; print("jax", jax.__version__, jax.devices(), "torch", torch.__version__,
            "keras", keras.__version__, "keras_hub", keras_hub.__version__)' | tee -a "$out/gpu.txt"

status=0
timeout 330 python3 tools/bench_train.py --device gpu --models gpt --timeout 300 \
  --output "$out/train_gpt.json" 2>&1 | tee "$out/train_gpt.log" || status=1
timeout 150 python3 tools/bench_train.py --device gpu --models gpt --peers kzoo --fused-loss --timeout 140 \
  --output "$out/train_gpt_fused.json" 2>&1 | tee "$out/train_gpt_fused.log" || status=1
timeout 90 python3 tools/bench_lm_loss.py --torch --output "$out/lm_loss.json" 2>&1 | tee "$out/lm_loss.log" \
  || status=1
exit $status
