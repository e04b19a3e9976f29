"""Start-up noise: TensorFlow's C++ notices kept off the console unless the user asks for them.

TensorFlow 2.21 prints its start-up notices (the oneDNN notice, "Could not find cuda drivers", cuInit errors on a
machine without a GPU) through absl before `TF_CPP_MIN_LOG_LEVEL` is read, so the variable alone does not silence
them. So when a command first imports TensorFlow (a JAX command may never do), the import runs with file
descriptor 2 captured, and every captured line except the notices named in `CHATTER` is written back: a real
warning or error printed on import still shows. `--verbose`, or a `TF_CPP_MIN_LOG_LEVEL` the user set, leaves
everything as TensorFlow prints it.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

CHATTER = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
)


def quiet_start(verbose=False):
    """Silences TensorFlow's start-up notices unless `verbose` or the user set `TF_CPP_MIN_LOG_LEVEL`."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's own INFO and WARNING lines after start-up
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, with a loader that imports it under `filtered_stderr`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # nothing after the import sees this wrapper
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # where a driver without a GPU reports cuInit errors


@contextlib.contextmanager
def filtered_stderr(chatter=CHATTER):
    """Captures file descriptor 2 (C++ and Python writes alike) and writes back the lines not in `chatter`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(text in line for text in chatter)))
            sys.stderr.flush()
