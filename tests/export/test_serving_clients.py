"""The serving material in exports/: the TF Serving config files parse as their protos, and the REST and gRPC
client examples round-trip requests against a stand-in Predict server (tests/export/predict_server.py) that
serves a real kzoo export, with the server's error message reaching the client on a bad request."""

import json

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from exports import grpc_client, rest_client
from kzoo.export import savedmodel
from kzoo.export.serving import ServingSettings
from tests.export import savedmodel_fixtures as fixtures
from tests.export.predict_server import PredictServer

pytestmark = pytest.mark.backend("tensorflow", reason="the clients talk to a server over a SavedModel export, "
                                                      "which needs TensorFlow")

TEXTS = ["the quick brown fox", "a lazy dog sleeps"]


def test_models_config_parses_as_a_model_server_config():
    from tensorflow_serving.config import model_server_config_pb2

    with open("exports/models.config", encoding="utf-8") as handle:
        config = text_format.Parse(handle.read(), model_server_config_pb2.ModelServerConfig())
    names = [entry.name for entry in config.model_config_list.config]
    assert names == ["reviews", "storyteller"]
    storyteller = config.model_config_list.config[1]
    assert list(storyteller.model_version_policy.specific.versions) == [1, 2]
    assert dict(storyteller.version_labels) == {"stable": 1, "canary": 2}


def _batching_parameters_class():
    """TF Serving's `BatchingParameters` message (session_bundle_config.proto), which tensorflow-serving-api does
    not ship: rebuilt here with the fields of that proto that the example sets, to parse the file the way the
    server does (text format: unknown fields and wrong value types are errors)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    proto = descriptor_pb2.FileDescriptorProto(name="kzoo_test_batching.proto", package="kzoo_test",
                                               dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    wrapped = {"max_batch_size": "Int64Value", "batch_timeout_micros": "Int64Value",
               "max_enqueued_batches": "Int64Value", "num_batch_threads": "Int64Value",
               "thread_pool_name": "StringValue"}
    for number, (name, kind) in enumerate(wrapped.items(), start=1):
        message.field.add(name=name, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{kind}",
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kzoo_test.BatchingParameters"))


def test_batching_config_parses_as_batching_parameters():
    with open("exports/batching.config", encoding="utf-8") as handle:
        parameters = text_format.Parse(handle.read(), _batching_parameters_class()())
    assert parameters.max_batch_size.value == 8 and parameters.batch_timeout_micros.value == 2000
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 32", _batching_parameters_class()())  # a wrapper, not a scalar


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tokenizer, files = fixtures.tokenizers(tmp_path_factory.mktemp("vocab"))["wordpiece"]
    model = fixtures.build("classifier", tokenizer.vocabulary_size)
    result = savedmodel.export_savedmodel(
        model, tmp_path_factory.mktemp("export"), tokenizer=tokenizer, labels=fixtures.CLASSES,
        model_name="reviews", settings=ServingSettings(sequence_length=24), tokenizer_files=files, warmup=False)
    expected = tf.saved_model.load(result.path).signatures["classify"](text=tf.constant(TEXTS))
    with PredictServer("reviews", result.path) as running:
        yield running, {name: value.numpy() for name, value in expected.items()}


def test_rest_client_classify_matches_the_signature(server):
    running, expected = server
    outputs = rest_client.predict(running.rest_url, "reviews", "classify", {"text": TEXTS}, version=1)
    assert outputs["label"] == [label.decode() for label in expected["label"]]
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


def test_rest_client_bad_request_carries_the_signature_message(server):
    running, _ = server
    with pytest.raises(rest_client.ServingError, match="token_ids") as raised:
        rest_client.predict(running.rest_url, "reviews", "serving_default",
                            {"token_ids": [[5, 10**6]], "padding_mask": [[1, 1]], "segment_ids": [[0, 0]]})
    assert raised.value.status == 400
    # The server survives and answers the next request.
    assert len(rest_client.predict(running.rest_url, "reviews", "classify", {"text": ["ok"]})["label"]) == 1


def test_rest_client_command_line(server, capsys):
    running, expected = server
    assert rest_client.main(["reviews", "classify", "--url", running.rest_url, "--input", json_input("text")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["label_id"] == expected["label_id"].tolist()
    assert rest_client.main(["reviews", "--metadata", "--url", running.rest_url]) == 0
    signatures = json.loads(capsys.readouterr().out)["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify", "classify_pair"} <= set(signatures)
    assert rest_client.main(["reviews", "classify", "--url", running.rest_url, "--input", "text=[]"]) == 1
    assert "batch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        rest_client.main(["reviews", "classify", "--url", running.rest_url, "--input", "no-equals-sign"])
    assert exited.value.code == 2


def test_grpc_client_classify_matches_the_signature(server):
    running, expected = server
    outputs = grpc_client.predict(grpc_client.connect(running.grpc_target), "reviews", "classify", {"text": TEXTS})
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    tensor = grpc_client.predict(grpc_client.connect(running.grpc_target), "reviews", "serving_default",
                                 {"token_ids": [[2, 7, 3]], "padding_mask": [[1, 1, 1]], "segment_ids": [[0, 0, 0]]})
    assert tensor["logits"].shape == (1, len(fixtures.CLASSES))


def test_grpc_client_bad_request_and_command_line(server, capsys):
    running, expected = server
    stub = grpc_client.connect(running.grpc_target)
    with pytest.raises(grpc_client.ServingError, match="padding_mask") as raised:
        grpc_client.predict(stub, "reviews", "serving_default",
                            {"token_ids": [[2, 7, 3]], "padding_mask": [[1, 1]], "segment_ids": [[0, 0, 0]]})
    assert raised.value.code == "INVALID_ARGUMENT"
    assert grpc_client.main(["reviews", "classify", "--target", running.grpc_target,
                             "--input", json_input("text")]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == [label.decode() for label in expected["label"]]


def json_input(name):
    return f"{name}={json.dumps(TEXTS)}"


def test_grpc_client_refuses_values_it_would_change():
    """Casting 1.7 to int32 would send id 1: the client names the input instead of sending another request."""
    assert grpc_client.as_array("token_ids", [[2, 7]]).dtype == np.int32
    assert grpc_client.as_array("temperature", 0.5).dtype == np.float32
    for name, value, match in [("token_ids", [[2, 1.7]], "input 'token_ids' takes int32 integers"),
                               ("seed", 2**40, "input 'seed' takes int32"),
                               ("padding_mask", [["1"]], "input 'padding_mask' takes int32 numbers"),
                               ("text", [3], "input 'text' takes text")]:
        with pytest.raises(ValueError, match=match):
            grpc_client.as_array(name, value)
    with pytest.raises(SystemExit) as exited:
        grpc_client.main(["reviews", "serving_default", "--input", "token_ids=[[1.5]]"])
    assert exited.value.code == 2
