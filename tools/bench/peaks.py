"""Accelerator peaks for MFU on GPUs, and the GPU presence check.

Spec-sheet dense BF16 tensor-core peaks (TFLOP/s, without structured sparsity; NVIDIA
datasheets list twice these numbers "with sparsity").
"""

import subprocess

BF16_DENSE_TFLOPS = {
    "H200 NVL": 835.5,
    "H200": 989.5,  # H200 SXM
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 989.5,  # H100 SXM (HBM3)
    "A100": 312.0,  # SXM4 and PCIe
}


def bf16_peak_tflops(device_name):
    """(peak TFLOP/s, matched table key) for a device name such as "NVIDIA H100 80GB HBM3",
    or (None, None) when the device is not in the table."""
    name = (device_name or "").upper()
    for key, value in BF16_DENSE_TFLOPS.items():  # ordered: the specific variants come first
        words = key.upper().split()
        if all(word in name for word in words):
            return value, key
    return None, None


def gpu_problem(python, environment):
    """None when a CUDA GPU is usable by JAX, else a sentence saying what is missing.

    Runs in the parent process before any worker starts, so `--device gpu` fails at once
    with a clear message on a machine without a GPU.
    """
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=False)
        smi = listed.stdout.strip() if listed.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        smi = ""
    if not smi:
        return ("--device gpu needs an NVIDIA GPU, but `nvidia-smi -L` lists none (or is not installed). "
                "Run on a CUDA machine, or use --device cpu.")
    probe = ("import jax; devices = jax.devices(); "
             "print(jax.default_backend(), devices[0].device_kind if devices else '')")
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300, check=False,
                              env=environment)
    except subprocess.TimeoutExpired:
        return "--device gpu: `import jax; jax.devices()` did not finish in 300 s."
    words = done.stdout.strip().split(None, 1)
    if done.returncode != 0 or not words or words[0] != "gpu":
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (f"--device gpu: nvidia-smi lists {smi.splitlines()[0]!r}, but JAX does not use it "
                f"(jax.default_backend() = {words[0] if words else '?'!r}; {detail}). Install jax[cuda12] "
                "(the GPU path runs kzoo and keras-hub under KERAS_BACKEND=jax).")
    return None
