"""Call a kzoo model in TF Serving over gRPC (`PredictionService/Predict`, port 8500 by default).

gRPC carries tensors as TensorProtos, so dtypes are exact (int32 ids, float32 options) and large batches cost
less to encode than JSON. Needs `tensorflow-serving-api` (which pulls `grpcio` and `tensorflow` for the protos and
`tf.make_tensor_proto`).

Examples (signature names and inputs are listed in the export's `assets.extra/kzoo_export.json`):

    python exports/grpc_client.py reviews classify --input text='["a wonderful film", "dull and long"]'
    python exports/grpc_client.py storyteller generate_with_options --input prompts='["Once"]' \\
        --input max_new_tokens=20 --input temperature=0.8 --input top_p=0.95 --input seed=7
    python exports/grpc_client.py reviews serving_default --input token_ids='[[2, 17, 41, 3]]' \\
        --input padding_mask='[[1, 1, 1, 1]]' --input segment_ids='[[0, 0, 0, 0]]'

From Python:

    from exports.grpc_client import connect, predict
    stub = connect("localhost:8500")
    outputs = predict(stub, "reviews", "classify", {"text": ["a wonderful film"]})   # {name: NumPy array}

Exit status: 0 on success, 1 when the server refused the request (its message is printed), 2 for bad arguments.
"""

import argparse
import json
import sys

import numpy as np

try:  # the same NAME=JSON parsing as the REST example, imported as a package module or run as a script
    from exports.rest_client import parse_inputs
except ImportError:
    from rest_client import parse_inputs

# Input dtypes of kzoo signatures, by input name: everything else is int32 (ids, masks, segments, positions).
FLOAT_INPUTS = ("temperature", "top_p")
STRING_INPUTS = ("text", "text_pair", "question", "context", "prompts")


class ServingError(RuntimeError):
    """The server refused the request: gRPC status code and TF Serving's message."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def connect(target, max_message_mb=64):
    """A PredictionService stub on an insecure channel to `host:port`."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    limit = max_message_mb * 1024 * 1024
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", limit),
                                                     ("grpc.max_receive_message_length", limit)])
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def as_array(name, value):
    """A request value as a NumPy array of the dtype kzoo's signature declares for input `name`.

    Raises ValueError naming the input when a value does not convert exactly (a fraction or an out-of-range
    number for an int32 input, text for a number): casting would send another request than the one asked for.
    """
    if name in STRING_INPUTS:
        if not all(isinstance(item, (str, bytes)) for item in np.ravel(np.asarray(value, dtype=object))):
            raise ValueError(f"input {name!r} takes text (strings), got {value!r}")
        flat = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in np.ravel(value)]
        return np.array(flat, dtype=object).reshape(np.shape(value))
    dtype = np.float32 if name in FLOAT_INPUTS else np.int32
    try:
        given = np.asarray(value)
        if given.dtype.kind not in "biuf":
            raise TypeError
        converted = given.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"input {name!r} takes {np.dtype(dtype).name} numbers, got {value!r}") from None
    if dtype is np.int32 and not np.array_equal(converted, given):
        raise ValueError(f"input {name!r} takes int32 integers, got {value!r} (a fraction or a number outside the "
                         "int32 range)")
    return converted


def predict(stub, model, signature, inputs, *, version=None, label=None, timeout=30.0):
    """Run `signature` of `model`; `inputs` maps names to arrays or nested lists. Returns {output: NumPy array}
    (string outputs as arrays of bytes). Raises `ServingError` when the server refuses the request."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    request = predict_pb2.PredictRequest(model_spec=spec)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(as_array(name, value)))
    try:
        reply = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        raise ServingError(error.code().name, error.details()) from None
    return {name: tf.make_ndarray(proto) for name, proto in reply.outputs.items()}


def _printable(array):
    if array.dtype == object:
        array = np.vectorize(lambda item: item.decode("utf-8", "replace"), otypes=[object])(array)
    return array.tolist()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("model", help="the model name in the server's config")
    parser.add_argument("signature", nargs="?", default="serving_default")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--target", default="localhost:8500", help="host:port of the gRPC API (default %(default)s)")
    parser.add_argument("--version", type=int)
    parser.add_argument("--label", help="a version label from the server config (e.g. stable, canary)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (generation can take a while)")
    args = parser.parse_args(argv)
    try:
        inputs = parse_inputs(args.input)
        for name, value in inputs.items():
            as_array(name, value)  # a value of the wrong kind is a bad argument (exit 2), named here
    except ValueError as error:
        parser.error(str(error))
    if not inputs:
        parser.error("give the signature's inputs with --input NAME=JSON")
    try:
        outputs = predict(connect(args.target), args.model, args.signature, inputs, version=args.version,
                          label=args.label, timeout=args.timeout)
    except ServingError as error:
        print(f"the server refused the request: {error}", file=sys.stderr)
        return 1
    print(json.dumps({name: _printable(array) for name, array in outputs.items()}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
