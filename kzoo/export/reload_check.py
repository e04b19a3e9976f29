"""Runs requests through an exported SavedModel in a process that has only TensorFlow.

    python reload_check.py EXPORT_VERSION_DIR REQUESTS.npz OUTPUTS.npz

Run as a script (by path), this imports neither kzoo nor Keras nor keras-hub: it blocks them, loads the
tensorflow-text kernels the way TF Serving links them (`tf.load_op_library`, without the tensorflow_text Python
package, which would import Keras), loads the SavedModel and calls its signatures. That proves the export is
self-contained. `kzoo.export.verify_savedmodel` and the tests use it.

REQUESTS.npz holds arrays named `<request>/<input>`, where `<request>` is `<signature>` or `<signature>#<n>`
(strings as bytes arrays); OUTPUTS.npz receives `<request>/<output>` arrays, and `<request>/error` (the message)
for a request that failed.
"""

import glob
import importlib.util
import os
import sys


def text_kernel_libraries():
    """The tensorflow-text kernel libraries (`.so`), found without importing its Python package."""
    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None:
        return []
    return sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "python", "ops", "_*.so")))


def main(argv):
    export_dir, requests_path, outputs_path = argv
    libraries = text_kernel_libraries()
    for name in ("keras", "kzoo", "keras_hub", "tf_keras", "tensorflow_text"):
        sys.modules[name] = None  # importing any of them now fails
    import numpy as np
    import tensorflow as tf

    for library in libraries:
        tf.load_op_library(library)
    loaded = tf.saved_model.load(export_dir)
    requests = {}
    with np.load(requests_path) as archive:
        for key in archive.files:
            request, name = key.split("/", 1)
            value = archive[key]
            if value.dtype.kind == "S":
                value = tf.constant(value.astype(object))
            requests.setdefault(request, {})[name] = value
    outputs = {}
    for request, inputs in requests.items():
        signature = loaded.signatures[request.split("#")[0]]
        try:
            results = signature(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            outputs[f"{request}/error"] = np.array(str(error).encode("utf-8"))
            continue
        for name, value in results.items():
            value = value.numpy()
            outputs[f"{request}/{name}"] = value.astype("S") if value.dtype == object else value
    np.savez(outputs_path, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
