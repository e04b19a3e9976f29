"""Helpers of tools/bench_train.py: model sizes and FLOP counts (`specs`), device peaks
(`peaks`), per-peer training steps (`keras_peers`, `torch_peers`), a minimal nanoGPT in
PyTorch (`nanogpt`) and the timing / ceiling / import helpers (`timing`).

The modules import no framework at module level; each worker process imports only the
framework its peer needs.
"""
