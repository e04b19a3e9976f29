"""The tokenizers export inside a SavedModel and give the same ids after a reload in a fresh process."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

TEXTS = ["hello world café", "日本語 🙂 don't", ""]

RELOAD = """
import json, sys, time
import tensorflow as tf
import tensorflow_text  # registers the tensorflow-text ops the graphs use
module = tf.saved_model.load(sys.argv[1])
texts = tf.constant(json.loads(sys.argv[2]))
names = json.loads(sys.argv[3])
outputs = {name: getattr(module, name)(texts)["token_ids"].numpy().tolist() for name in names}
started = time.perf_counter()
module.gpt2(tf.constant(["a" * 20000]))  # one long word: the BPE in the graph is bounded too (see kzoo.text.bpe)
outputs["gpt2_long_word_seconds"] = time.perf_counter() - started
print(json.dumps(outputs))
"""


@pytest.mark.slow
@pytest.mark.backend("tensorflow", reason="a tf.Module of TensorFlow graphs, the same under every Keras backend")
def test_saved_model_round_trip_in_a_fresh_process(bert_uncased, gpt2, t5, tmp_path):
    module = tf.Module()
    tokenizers = {"bert": bert_uncased, "gpt2": gpt2, "t5": t5}
    for name, tokenizer in tokenizers.items():
        setattr(module, f"{name}_tokenizer", tokenizer)
        setattr(module, name, _encode_endpoint(tokenizer))
    expected = {name: getattr(module, name)(tf.constant(TEXTS))["token_ids"].numpy().tolist() for name in tokenizers}
    tf.saved_model.save(module, str(tmp_path / "tokenizers"))
    argv = [sys.executable, "-c", RELOAD, str(tmp_path / "tokenizers"), json.dumps(TEXTS), json.dumps(list(tokenizers))]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    # keras-hub's unbounded merge loop took ~60 s for this word; kzoo's cut pieces take well under a second.
    assert reloaded.pop("gpt2_long_word_seconds") < 10.0
    assert reloaded == expected


def _encode_endpoint(tokenizer):
    return tf.function(
        lambda strings: tokenizer.encode(strings, sequence_length=12),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
