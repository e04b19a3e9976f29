"""A stand-in for TF Serving's Predict API (REST and gRPC) over one loaded SavedModel, for testing the client
examples in exports/ where no `tensorflow_model_server` binary is available.

It follows TF Serving's wire formats: REST `POST /v1/models/NAME[/versions/N]:predict` with a columnar
`{"signature_name", "inputs"}` body answering `{"outputs": ...}` (the bare value for a single output) or HTTP 400
`{"error": message}`; `GET /v1/models/NAME/metadata`; gRPC `tensorflow.serving.PredictionService/Predict` answering
INVALID_ARGUMENT with the signature's message. Inputs are cast to the dtypes of the signature, as the server does.
It is not TF Serving: no batching, no version polling, one model.
"""

import concurrent.futures
import http.server
import json
import re
import threading

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class LoadedModel:
    def __init__(self, name, path):
        self.name = name
        self.loaded = tf.saved_model.load(path)

    def run(self, signature_name, arrays):
        """{output: NumPy array}; raises KeyError (unknown signature) or InvalidArgumentError (bad request)."""
        function = self.loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        unknown = sorted(set(arrays) - set(specs))
        if unknown:
            raise tf.errors.InvalidArgumentError(None, None, f"unknown inputs {unknown}; expected {sorted(specs)}")
        tensors = {}
        for name, spec in specs.items():
            if name not in arrays:
                raise tf.errors.InvalidArgumentError(None, None, f"missing input {name!r}")
            value = arrays[name]
            if spec.dtype == tf.string:
                tensors[name] = tf.constant(value, tf.string)
            else:
                tensors[name] = tf.constant(np.asarray(value).astype(spec.dtype.as_numpy_dtype))
        return {name: tensor.numpy() for name, tensor in function(**tensors).items()}

    def metadata(self):
        signatures = {}
        for name, function in self.loaded.signatures.items():
            inputs = {key: {"dtype": spec.dtype.name} for key, spec in function.structured_input_signature[1].items()}
            outputs = {key: {"dtype": spec.dtype.name} for key, spec in function.structured_outputs.items()}
            signatures[name] = {"inputs": inputs, "outputs": outputs}
        return {"model_spec": {"name": self.name}, "metadata": {"signature_def": {"signature_def": signatures}}}


def _json_value(array):
    if array.dtype == object:
        array = np.vectorize(lambda item: item.decode("utf-8"), otypes=[object])(array)
    return array.tolist()


def _rest_handler(model):
    route = re.compile(rf"^/v1/models/{re.escape(model.name)}(/versions/\d+|/labels/\w+)?(:predict|/metadata)$")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status, body):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            match = route.match(self.path)
            if not match or match.group(2) != "/metadata":
                return self._reply(404, {"error": f"no such endpoint {self.path}"})
            return self._reply(200, model.metadata())

        def do_POST(self):
            match = route.match(self.path)
            if not match or match.group(2) != ":predict":
                return self._reply(404, {"error": f"no such endpoint {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outputs = model.run(body.get("signature_name", "serving_default"), body["inputs"])
            except KeyError as error:
                return self._reply(400, {"error": f"unknown signature or missing field: {error}"})
            except (ValueError, tf.errors.InvalidArgumentError) as error:
                return self._reply(400, {"error": getattr(error, "message", str(error))})
            values = {name: _json_value(array) for name, array in outputs.items()}
            return self._reply(200, {"outputs": next(iter(values.values())) if len(values) == 1 else values})

    return Handler


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model):
        self.model = model

    def Predict(self, request, context):
        arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        try:
            outputs = self.model.run(request.model_spec.signature_name or "serving_default", arrays)
        except KeyError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"unknown signature: {error}")
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, getattr(error, "message", str(error)))
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = self.model.name
        for name, array in outputs.items():
            reply.outputs[name].CopyFrom(tf.make_tensor_proto(array))
        return reply


class PredictServer:
    """`with PredictServer(name, path) as server:` serves REST at `server.rest_url` and gRPC at
    `server.grpc_target` on free local ports."""

    def __init__(self, name, path):
        self.model = LoadedModel(name, path)

    def __enter__(self):
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self.model))
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(self.model),
                                                                            self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc_info):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)
