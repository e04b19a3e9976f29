"""Call a kzoo model in TF Serving over its REST API (standard library only: no TensorFlow on the client).

TF Serving's REST predict endpoint is `POST http://HOST:8501/v1/models/NAME[/versions/N]:predict` with a JSON body
`{"signature_name": ..., "inputs": {input: value}}` ("columnar" format: each input a list over the batch). The
reply is `{"outputs": {output: value}}`, or the bare value when the signature has a single output. String outputs
arrive as UTF-8 strings. Errors come back as HTTP 400 with `{"error": "..."}` carrying the signature's own message
(for example "token_ids: ids must be in [0, vocabulary_size)").

Examples (the signature names and inputs of an export are listed in its `assets.extra/kzoo_export.json`):

    python exports/rest_client.py reviews classify --input text='["a wonderful film", "dull and long"]'
    python exports/rest_client.py reviews classify_pair --input text='["a"]' --input text_pair='["b"]'
    python exports/rest_client.py storyteller generate --input prompts='["Once upon a time"]'
    python exports/rest_client.py storyteller generate_with_options --input prompts='["Once"]' \\
        --input max_new_tokens=20 --input temperature=0.8 --input top_p=0.95 --input seed=7
    python exports/rest_client.py reviews serving_default \\
        --input token_ids='[[2, 17, 41, 3]]' --input padding_mask='[[1, 1, 1, 1]]' --input segment_ids='[[0, 0, 0, 0]]'
    python exports/rest_client.py reviews --metadata      # the signatures the server loaded

Exit status: 0 on success, 1 when the server refused the request (its message is printed), 2 for bad arguments.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request


class ServingError(RuntimeError):
    """The server answered with an error (HTTP status and TF Serving's message)."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def model_url(base_url, model, version=None, label=None):
    """`BASE/v1/models/NAME[/versions/N | /labels/L]`."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    url = f"{base_url.rstrip('/')}/v1/models/{model}"
    if version is not None:
        url += f"/versions/{int(version)}"
    elif label is not None:
        url += f"/labels/{label}"
    return url


def _request(url, body=None, timeout=30.0):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        try:
            message = json.loads(text).get("error", text)
        except ValueError:
            message = text
        raise ServingError(error.code, message) from None


def predict(base_url, model, signature, inputs, *, version=None, label=None, timeout=30.0):
    """Run `signature` of `model` on `inputs` ({name: JSON-able value}); returns {output: value}.

    Raises `ServingError` with the server's message when the request is refused, and `urllib.error.URLError` when
    no server answers at `base_url`.
    """
    reply = _request(model_url(base_url, model, version, label) + ":predict",
                     {"signature_name": signature, "inputs": inputs}, timeout)
    outputs = reply["outputs"]
    return outputs if isinstance(outputs, dict) else {"output": outputs}


def metadata(base_url, model, *, version=None, label=None, timeout=30.0):
    """TF Serving's model metadata: the loaded signature definitions (inputs, outputs, dtypes)."""
    return _request(model_url(base_url, model, version, label) + "/metadata", timeout=timeout)


def parse_inputs(pairs):
    """`["name=JSON", ...]` → {name: value}; a value that is not JSON is taken as a plain string."""
    inputs = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--input expects NAME=VALUE (VALUE as JSON), got {pair!r}")
        try:
            inputs[name] = json.loads(text)
        except ValueError:
            inputs[name] = text
    return inputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("model", help="the model name in the server's config")
    parser.add_argument("signature", nargs="?", default="serving_default")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--url", default="http://localhost:8501", help="the REST endpoint (default %(default)s)")
    parser.add_argument("--version", type=int)
    parser.add_argument("--label", help="a version label from the server config (e.g. stable, canary)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (generation can take a while)")
    parser.add_argument("--metadata", action="store_true", help="print the model's signatures instead")
    args = parser.parse_args(argv)
    try:
        if args.metadata:
            result = metadata(args.url, args.model, version=args.version, label=args.label, timeout=args.timeout)
        else:
            inputs = parse_inputs(args.input)
            if not inputs:
                parser.error("give the signature's inputs with --input NAME=JSON")
            result = predict(args.url, args.model, args.signature, inputs, version=args.version, label=args.label,
                             timeout=args.timeout)
    except ValueError as error:
        parser.error(str(error))
    except ServingError as error:
        print(f"the server refused the request: {error}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"no answer from {args.url}: {error.reason}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
