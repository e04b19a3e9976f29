"""Serving speed of kzoo's exports on this CPU: a BERT encoder (kzoo SavedModel, kzoo ONNX fp32/int8 in ONNX
Runtime, keras-hub SavedModel, Hugging Face torch) or, with `--model gpt2`, GPT-2 generation (kzoo SavedModel
`generate_with_options` against `kzoo.export.OnnxGenerator`), side by side.

BERT (`--model bert`, the default): all peers are BERT-base (12 layers, hidden 768, 12 heads, vocabulary 30522)
with random weights, fed the same random ids at sequence length 128 (every position real). Artifacts are prepared
first, each in its own process (kzoo: `export_savedmodel`, `export_onnx`, `quantize_onnx`; keras-hub:
`BertBackbone.export`); then each peer is timed in a fresh process that only loads its artifact: 3 warm-up calls,
then the median of `--repeats` calls per batch size. TensorFlow and ONNX Runtime use their default thread pools
(all cores); torch is set to all cores. Besides the encoder:
  * `kzoo_savedmodel_classify`: a 2-class `BertClassifier` exported with a WordPiece tokenizer (a vocabulary of
    random lowercase words) and `ServingSettings(sequence_length=128)`, timed on its text-in `classify` signature
    with texts that fill all 128 word pieces (checked). The same process times the tokenizer and packing alone
    (`..._tokenizer`: the steps `classify` runs before the model) and the tensor-in `serving_default`
    (`..._tensor`), so the table shows the tokenizer's share.
  * `kzoo_savedmodel_int8`: the encoder quantized by `kzoo.models.quantization.quantize_model(model, "int8")`
    (Keras int8) and exported by `export_savedmodel`, to compare with `kzoo_onnx_int8`.
`keras_hub_onnx` is keras-hub's SavedModel converted by the tf2onnx command line (`--saved-model`, same opset),
the route keras-hub users take to ONNX. Each row also gets its achieved GFLOP/s (`bert_flops`: the encoder's
matmul FLOPs per call) against a measured ceiling: ONNX Runtime running one fp32 MatMul (and its int8
dynamically quantized form) of the BERT feed-forward shape over the same number of rows, so a figure near 100%
says the peer is bound by this CPU's matmul speed, not by overheads.

GPT-2 (`--model gpt2`): GPT-2 small sizes with random weights and a byte-level BPE tokenizer with one token per
byte and no special tokens (so no stop token can end a row early), exported by `export_savedmodel`
(`max_new_tokens` = `--new-tokens`) and `export_onnx` (decoding graphs). Each batch row is a `--prompt-length`
character ASCII text, i.e. that many tokens; the SavedModel gets the texts, `OnnxGenerator` the same token ids
(packed by the exported tokenizer's rule in the prepare step), greedy, `--new-tokens` new tokens, no stop ids.
Reported: ms/token (call time / new tokens per row), the first call's time, tokens/s, and whether both give the
same tokens (random weights, greedy, fp32: they should). 1 warm-up call after the first, then `--repeats` calls.

`--rounds R` runs the whole sequence of peer processes R times in turn (A, B, C, A, B, C, ...), so that a noisy
shared machine slows every peer alike; the table gives per peer and batch the median over rounds of each process's
median (`summarize`), requests/s (batch / latency), and the ratio to `kzoo_onnx_fp32` (int8 peers also to
`kzoo_onnx_int8`; GPT-2: to `kzoo_onnx_generate`). The machine's load average is printed at start and end.

`--accuracy-run RUN_DIR` (a finished `kzoo train bert_classify` run) adds the int8 accuracy check: the run's
held-out set scored by the Keras model, its ONNX fp32 export and the int8 one.

Usage:
    .venv/bin/python tools/bench_export.py                       # BERT-base, batch 1 and 8, seq 128
    .venv/bin/python tools/bench_export.py --batch-sizes 1 8 32 --rounds 3
    .venv/bin/python tools/bench_export.py --model gpt2 --rounds 3 # GPT-2 small, 16-token prompt, 32 new tokens
    .venv/bin/python tools/bench_export.py --quick               # tiny models, a few calls (1-2 min: exports)
    .venv/bin/python tools/bench_export.py --quick --model gpt2
    .venv/bin/python tools/bench_export.py --accuracy-run runs/bert_classify --output bench_export.json

Prints a table and writes JSON (default `bench_export.json`): the raw per-process rows (`results`, with their
round) and the summary (`summary`).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = {  # --model -> its peers, in the order each round runs them
    "bert": ("kzoo_savedmodel", "kzoo_savedmodel_classify", "kzoo_savedmodel_int8", "kzoo_onnx_fp32",
             "kzoo_onnx_int8", "keras_hub_savedmodel", "keras_hub_onnx", "hf_torch"),
    "gpt2": ("kzoo_savedmodel_generate", "kzoo_onnx_generate"),
}
# The prepare step that writes each peer's artifact (None: the peer builds its own model).
ARTIFACT = {"kzoo_savedmodel": "kzoo", "kzoo_savedmodel_int8": "kzoo", "kzoo_onnx_fp32": "kzoo",
            "kzoo_onnx_int8": "kzoo", "kzoo_savedmodel_classify": "kzoo_classify",
            "keras_hub_savedmodel": "keras_hub", "keras_hub_onnx": "keras_hub", "hf_torch": None,
            "kzoo_savedmodel_generate": "kzoo_gpt2", "kzoo_onnx_generate": "kzoo_gpt2_onnx"}
# What each model's ratios are taken against: (fp32 reference, int8 reference for peers ending in "int8").
REFERENCES = {"bert": ("kzoo_onnx_fp32", "kzoo_onnx_int8"), "gpt2": ("kzoo_onnx_generate", None)}
OPSET = 17
BERT_BASE = dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                 max_sequence_length=512)
TINY = dict(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128,
            max_sequence_length=128)
GPT2_SMALL = dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                  max_sequence_length=1024)  # as tools/bench_generate.py
GPT2_TINY = dict(vocabulary_size=512, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=256,
                 max_sequence_length=128)
CLASSIFY_WORDS = 3000  # the classifier's WordPiece vocabulary: this many random lowercase words (--quick: 300)


def model_sizes(args):
    """The sizes `args` (--model, --quick) select."""
    if args.model == "gpt2":
        return GPT2_TINY if args.quick else GPT2_SMALL
    return TINY if args.quick else BERT_BASE


def _inputs(batch, length, vocabulary_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }


def bert_flops(sizes, batch, length):
    """Multiply-add FLOPs (2 per MAC) of one BERT encoder call: per layer the Q/K/V/output projections
    (4·h²), the feed-forward (2·h·i) and the attention scores and context (2·s·h) per token, plus the pooler."""
    hidden, inner = sizes["hidden_dim"], sizes["intermediate_dim"]
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * inner + 2 * length * hidden)
    return batch * (sizes["num_layers"] * length * per_token_layer + 2 * hidden * hidden)


# --- preparing artifacts (one process each) ----------------------------------------------------------------------

def prepare_kzoo(sizes, workdir, args):
    import keras

    from kzoo import models
    from kzoo.export import export_onnx, export_savedmodel, quantize_onnx
    from kzoo.models.quantization import quantize_model

    keras.utils.set_random_seed(0)
    model = models.BertBackbone(**sizes, dropout=0.0, attention_dropout=0.0)
    started = time.perf_counter()
    export_savedmodel(model, os.path.join(workdir, "kzoo_savedmodel"), model_name="bert", version=1, warmup=False)
    saved_s = time.perf_counter() - started
    started = time.perf_counter()
    export_onnx(model, os.path.join(workdir, "kzoo_onnx"))
    onnx_s = time.perf_counter() - started
    started = time.perf_counter()
    quantize_onnx(os.path.join(workdir, "kzoo_onnx"))
    int8_s = time.perf_counter() - started
    started = time.perf_counter()
    quantize_model(model, "int8")  # after the fp32 exports: it quantizes `model` in place
    export_savedmodel(model, os.path.join(workdir, "kzoo_savedmodel_int8"), model_name="bert", version=1,
                      warmup=False)
    return {"savedmodel_export_s": saved_s, "onnx_export_s": onnx_s, "int8_quantize_s": int8_s,
            "savedmodel_int8_export_s": time.perf_counter() - started}


def classify_vocabulary(count, seed=0):
    """BERT's special tokens then `count` distinct random lowercase words of 3 to 8 letters: every word is one
    word piece, so a text of n words packs to min(n + 2, sequence_length) pieces."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(3, 9)))))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]


def classify_texts(vocabulary, batch, sequence_length, seed=0):
    """`batch` texts of `sequence_length` random words of `vocabulary` (more than the packed row holds)."""
    import numpy as np

    words = [token for token in vocabulary if not token.startswith("[")]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=sequence_length)) for _ in range(batch)]


def prepare_kzoo_classify(sizes, workdir, args):
    import keras

    from kzoo import models, text
    from kzoo.export import export_savedmodel
    from kzoo.export.serving import ServingSettings

    vocab_txt = os.path.join(workdir, "classify_vocab.txt")
    with open(vocab_txt, "w", encoding="utf-8") as handle:
        handle.write("\n".join(classify_vocabulary(300 if args.quick else CLASSIFY_WORDS)) + "\n")
    tokenizer = text.WordPieceTokenizer.from_files(vocab_txt, lowercase=True)
    keras.utils.set_random_seed(0)
    backbone = models.BertBackbone(**sizes, dropout=0.0, attention_dropout=0.0)
    model = models.BertClassifier(backbone, num_classes=2, dropout=0.0)
    started = time.perf_counter()
    export_savedmodel(model, os.path.join(workdir, "kzoo_classify"), model_name="classifier", version=1,
                      tokenizer=tokenizer, tokenizer_files={"vocab.txt": vocab_txt}, warmup=False,
                      settings=ServingSettings(sequence_length=args.sequence_length))
    return {"savedmodel_export_s": time.perf_counter() - started}


def byte_level_tokenizer():
    """GPT-2's byte-level BPE with one token per byte (256 tokens, one merge so keras-hub's merge table is not
    empty) and no special tokens: no eos, so `export_savedmodel` sets no stop token, and pad id 0. An ASCII text
    of n characters is n tokens."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    from kzoo.text import BytePairTokenizer

    _, alphabet = bytes_to_unicode()
    vocabulary = {symbol: index for index, symbol in enumerate(alphabet)}
    vocabulary["\u0120\u0120"] = len(vocabulary)  # "  " (two spaces): never in the prompts
    return BytePairTokenizer(vocabulary, ["\u0120 \u0120"], special_tokens={})


def prompt_texts(batch, length, seed=0):
    """`batch` different texts of `length` ASCII characters (lowercase words and single spaces)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(batch):
        letters = rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=length)
        letters[4::6] = " "  # words of 4-5 letters; never two spaces in a row, never a leading space
        texts.append("".join(letters))
    return texts


def _gpt2(sizes, workdir, weights=None):
    """The random GPT-2 `GPTCausalLM`; with `weights` (a `.weights.h5` file) those weights instead."""
    import keras

    from kzoo import models

    keras.utils.set_random_seed(0)
    model = models.GPTCausalLM(models.GPTBackbone(**sizes, dropout=0.0))
    if weights:
        model.load_weights(weights)
    return model


def prepare_kzoo_gpt2(sizes, workdir, args):
    """The GPT-2 SavedModel, its weights (for `prepare_kzoo_gpt2_onnx`, a separate process: the two exports of
    GPT-2 small in one process take more memory than either) and `gpt2_prompts.json`: per batch size the prompt
    texts and the token ids the exported tokenizer packs them into (the rule of the `generate` signatures)."""
    from kzoo.export import export_savedmodel
    from kzoo.export.serving import ServingSettings
    from kzoo.text import packing

    model = _gpt2(sizes, workdir)
    model.save_weights(os.path.join(workdir, "gpt2.weights.h5"))
    tokenizer = byte_level_tokenizer()
    settings = ServingSettings(sequence_length=args.prompt_length, max_new_tokens=args.new_tokens)
    started = time.perf_counter()
    result = export_savedmodel(model, os.path.join(workdir, "kzoo_gpt2_savedmodel"), model_name="gpt2", version=1,
                               tokenizer=tokenizer, settings=settings, warmup=False)
    saved_s = time.perf_counter() - started
    with open(os.path.join(result.path, "assets.extra", "kzoo_export.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)
    if recorded["settings"]["stop_token_ids"]:
        raise RuntimeError(f"the GPT-2 export has stop tokens {recorded['settings']['stop_token_ids']}: a row could "
                           "end early")
    prompts = {}
    for batch in args.batch_sizes:
        texts = prompt_texts(batch, args.prompt_length, seed=batch)
        packed = packing.pack_prompt(tokenizer.tokenize(texts), start_ids=tokenizer.start_ids,
                                     sequence_length=args.prompt_length, pad_id=settings.pad_id)
        ids, mask = packed["token_ids"].numpy(), packed["padding_mask"].numpy()
        if ids.shape != (batch, args.prompt_length) or not mask.all():
            raise RuntimeError(f"the prompts pack to {ids.shape} ids with {int(mask.sum())} real tokens, not "
                               f"{batch} rows of {args.prompt_length}")
        prompts[str(batch)] = {"texts": texts, "token_ids": ids.tolist()}
    with open(os.path.join(workdir, "gpt2_prompts.json"), "w", encoding="utf-8") as handle:
        json.dump(prompts, handle)
    return {"savedmodel_export_s": saved_s}


def prepare_kzoo_gpt2_onnx(sizes, workdir, args):
    """The ONNX export (with decoding graphs) of the weights `prepare_kzoo_gpt2` saved."""
    from kzoo.export import export_onnx

    model = _gpt2(sizes, workdir, weights=os.path.join(workdir, "gpt2.weights.h5"))
    started = time.perf_counter()
    export_onnx(model, os.path.join(workdir, "kzoo_gpt2_onnx"))
    return {"onnx_export_s": time.perf_counter() - started}


def prepare_keras_hub(sizes, workdir, args):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=sizes["vocabulary_size"], num_layers=sizes["num_layers"], num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"], intermediate_dim=sizes["intermediate_dim"], dropout=0.0,
        max_sequence_length=sizes["max_sequence_length"],
    )
    started = time.perf_counter()
    saved = os.path.join(workdir, "keras_hub_savedmodel")
    backbone.export(saved, format="tf_saved_model", verbose=False)
    result = {"savedmodel_export_s": time.perf_counter() - started}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--opset", str(OPSET),
                           "--output", os.path.join(workdir, "keras_hub.onnx")], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError("tf2onnx could not convert keras-hub's SavedModel: "
                           + " | ".join(done.stderr.strip().splitlines()[-3:]))
    result["onnx_export_s"] = time.perf_counter() - started
    return result


PREPARE = {"kzoo": prepare_kzoo, "kzoo_classify": prepare_kzoo_classify, "keras_hub": prepare_keras_hub,
           "kzoo_gpt2": prepare_kzoo_gpt2, "kzoo_gpt2_onnx": prepare_kzoo_gpt2_onnx}


# --- timing (one process per peer) -------------------------------------------------------------------------------

def _tf_savedmodel(path, inputs_for, renames=None):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    function = loaded.signatures["serving_default"]

    def make(batch, length):
        inputs = {(renames or {}).get(k, k): tf.constant(v) for k, v in inputs_for(batch, length).items()}
        return lambda: function(**inputs)

    return make


def time_kzoo_savedmodel(sizes, workdir):
    return _tf_savedmodel(os.path.join(workdir, "kzoo_savedmodel", "bert", "1"),
                          lambda b, s: _inputs(b, s, sizes["vocabulary_size"]))


def time_kzoo_savedmodel_int8(sizes, workdir):
    return _tf_savedmodel(os.path.join(workdir, "kzoo_savedmodel_int8", "bert", "1"),
                          lambda b, s: _inputs(b, s, sizes["vocabulary_size"]))


def time_kzoo_savedmodel_classify(sizes, workdir):
    """Three rows from one classifier SavedModel: `classify` (text in), the tokenizer and packing alone (a
    tf.function running what `classify` runs before the model) and `serving_default` (the packed ids in)."""
    import tensorflow as tf

    from kzoo import text
    from kzoo.export import text_ops
    from kzoo.export.serving import _bert_packed  # the packing `classify` runs: the timing follows any change to it

    vocab_txt = os.path.join(workdir, "classify_vocab.txt")
    with open(vocab_txt, encoding="utf-8") as handle:
        vocabulary = handle.read().split()
    tokenizer = text.WordPieceTokenizer.from_files(vocab_txt, lowercase=True)
    loaded = tf.saved_model.load(os.path.join(workdir, "kzoo_classify", "classifier", "1"))
    classify, tensor_in = loaded.signatures["classify"], loaded.signatures["serving_default"]

    def packed(batch, length):
        texts = tf.constant(classify_texts(vocabulary, batch, length))
        pack = tf.function(lambda t: _bert_packed(tokenizer, text_ops.check_batch(t, "text"), length),
                           input_signature=[tf.TensorSpec([None], tf.string)])
        inputs = pack(texts)
        real = inputs["padding_mask"].numpy().sum(axis=1)
        if (real != length).any():
            raise RuntimeError(f"the classify texts pack to {sorted(set(real.tolist()))} word pieces, not {length}")
        return texts, pack, inputs

    def make_classify(batch, length):
        texts, _, _ = packed(batch, length)
        return lambda: classify(text=texts)

    def make_tokenizer(batch, length):
        texts, pack, _ = packed(batch, length)
        return lambda: pack(texts)

    def make_tensor(batch, length):
        _, _, inputs = packed(batch, length)
        return lambda: tensor_in(**inputs)

    return {"kzoo_savedmodel_classify": make_classify, "kzoo_savedmodel_classify_tokenizer": make_tokenizer,
            "kzoo_savedmodel_classify_tensor": make_tensor}


def _ort(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _time_onnx(sizes, workdir, file_name):
    session = _ort(os.path.join(workdir, file_name))
    names = [item.name for item in session.get_inputs()]

    def make(batch, length):
        feed = {k: v for k, v in _inputs(batch, length, sizes["vocabulary_size"]).items() if k in names}
        return lambda: session.run(None, feed)

    return make


def time_kzoo_onnx_fp32(sizes, workdir):
    return _time_onnx(sizes, workdir, os.path.join("kzoo_onnx", "model.onnx"))


def time_kzoo_onnx_int8(sizes, workdir):
    return _time_onnx(sizes, workdir, os.path.join("kzoo_onnx", "model.int8.onnx"))


def time_keras_hub_onnx(sizes, workdir):
    return _time_onnx(sizes, workdir, "keras_hub.onnx")


def time_keras_hub_savedmodel(sizes, workdir):
    # keras-hub's BertBackbone takes token_ids, segment_ids and padding_mask.
    return _tf_savedmodel(os.path.join(workdir, "keras_hub_savedmodel"),
                          lambda b, s: _inputs(b, s, sizes["vocabulary_size"]))


def time_hf_torch(sizes, workdir):
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    config = transformers.BertConfig(
        vocab_size=sizes["vocabulary_size"], num_hidden_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_heads"], hidden_size=sizes["hidden_dim"],
        intermediate_size=sizes["intermediate_dim"], max_position_embeddings=sizes["max_sequence_length"],
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertModel(config).eval()

    def make(batch, length):
        inputs = _inputs(batch, length, sizes["vocabulary_size"])
        ids = torch.tensor(inputs["token_ids"], dtype=torch.long)
        segments = torch.tensor(inputs["segment_ids"], dtype=torch.long)
        mask = torch.tensor(inputs["padding_mask"], dtype=torch.long)

        def call():
            with torch.inference_mode():
                return model(input_ids=ids, token_type_ids=segments, attention_mask=mask)

        return call

    return make


def _gpt2_prompts(workdir, batch):
    with open(os.path.join(workdir, "gpt2_prompts.json"), encoding="utf-8") as handle:
        return json.load(handle)[str(batch)]


def time_kzoo_savedmodel_generate(sizes, workdir, new_tokens):
    """`generate_with_options` on the prompt texts, greedy: returns `make(batch)` -> a call giving the new
    tokens (b, n) and each row's count."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the tokenizer's ops (built into TF Serving)

    loaded = tf.saved_model.load(os.path.join(workdir, "kzoo_gpt2_savedmodel", "gpt2", "1"))
    generate = loaded.signatures["generate_with_options"]
    options = {"max_new_tokens": tf.constant(new_tokens), "temperature": tf.constant(0.0),
               "top_p": tf.constant(1.0), "seed": tf.constant(0)}

    def make(batch):
        prompts = tf.constant(_gpt2_prompts(workdir, batch)["texts"])

        def call():
            outputs = generate(prompts=prompts, **options)
            return outputs["token_ids"].numpy(), outputs["num_tokens"].numpy()

        return call

    return make


def time_kzoo_onnx_generate(sizes, workdir, new_tokens):
    """`OnnxGenerator.generate` on the token ids the SavedModel's tokenizer packed, no stop ids."""
    import numpy as np

    from kzoo.export import OnnxGenerator

    generator = OnnxGenerator(os.path.join(workdir, "kzoo_gpt2_onnx"))

    def make(batch):
        ids = np.asarray(_gpt2_prompts(workdir, batch)["token_ids"], np.int32)

        def call():
            tokens = generator.generate(ids, max_new_tokens=new_tokens)
            return tokens, np.full(len(tokens), tokens.shape[1])

        return call

    return make


TIMERS = {
    "kzoo_savedmodel": time_kzoo_savedmodel, "kzoo_savedmodel_classify": time_kzoo_savedmodel_classify,
    "kzoo_savedmodel_int8": time_kzoo_savedmodel_int8, "kzoo_onnx_fp32": time_kzoo_onnx_fp32,
    "kzoo_onnx_int8": time_kzoo_onnx_int8, "keras_hub_savedmodel": time_keras_hub_savedmodel,
    "keras_hub_onnx": time_keras_hub_onnx, "hf_torch": time_hf_torch,
}
GENERATION_TIMERS = {"kzoo_savedmodel_generate": time_kzoo_savedmodel_generate,
                     "kzoo_onnx_generate": time_kzoo_onnx_generate}


def matmul_ceiling(sizes, workdir, batch_sizes, length, repeats):
    """GFLOP/s of ONNX Runtime on one MatMul (rows = batch·length, hidden → intermediate), fp32 and int8
    (dynamic quantization, as `quantize_onnx` applies): the most this CPU gives the encoder's matmuls."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hidden, inner = sizes["hidden_dim"], sizes["intermediate_dim"]
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(hidden, inner)).astype("float32"), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "ceiling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", inner])], [weight])
    fp32_path, int8_path = os.path.join(workdir, "ceiling.onnx"), os.path.join(workdir, "ceiling.int8.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), fp32_path)
    quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    rows = []
    for precision, path in (("fp32", fp32_path), ("int8", int8_path)):
        session = _ort(path)
        for batch in batch_sizes:
            x = np.random.default_rng(1).normal(size=(batch * length, hidden)).astype("float32")
            median, best = _median_ms(lambda session=session, x=x: session.run(None, {"x": x}), repeats)
            flops = 2 * batch * length * hidden * inner
            rows.append({"ceiling": precision, "batch": batch, "median_ms": median, "min_ms": best,
                         "gflops_per_s": flops / median / 1e6})
    return rows


def _median_ms(call, repeats, warmups=3):
    for _ in range(warmups):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples)


def _emit(row):
    print(json.dumps(row), flush=True)


def _generation_worker(args, sizes):
    """One JSON row per batch size: the first call, the median and best of `--repeats` calls after one warm-up,
    ms/token and the new tokens (each row must have all `--new-tokens`)."""
    started = time.perf_counter()
    make = GENERATION_TIMERS[args.worker](sizes, args.workdir, args.new_tokens)
    load_s = time.perf_counter() - started
    for batch in args.batch_sizes:
        call = make(batch)
        started = time.perf_counter()
        tokens, counts = call()
        first_ms = (time.perf_counter() - started) * 1000
        if tokens.shape != (batch, args.new_tokens) or (counts != args.new_tokens).any():
            raise RuntimeError(f"{args.worker} generated {tokens.shape} tokens with row counts {counts.tolist()}, "
                               f"not {args.new_tokens} per row: a row stopped early")
        median, best = _median_ms(call, args.repeats, warmups=1)
        _emit({"peer": args.worker, "batch": batch, "prompt_length": args.prompt_length,
               "new_tokens": args.new_tokens, "median_ms": median, "min_ms": best,
               "ms_per_token": median / args.new_tokens, "first_call_ms": first_ms, "load_s": load_s,
               "repeats": args.repeats, "tokens": tokens.tolist()})


def worker(args):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = model_sizes(args)
    if args.worker.startswith("prepare_"):
        import resource

        result = PREPARE[args.worker[len("prepare_"):]](sizes, args.workdir, args)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        _emit({"prepare": args.worker, **result, "peak_rss_mb": float(peak_mb)})
        return
    if args.worker == "ceiling":
        for row in matmul_ceiling(sizes, args.workdir, args.batch_sizes, args.sequence_length, args.repeats):
            _emit(row)
        return
    if args.worker in GENERATION_TIMERS:
        _generation_worker(args, sizes)
        return
    started = time.perf_counter()
    made = TIMERS[args.worker](sizes, args.workdir)
    parts = made if isinstance(made, dict) else {args.worker: made}  # a peer may time several functions
    load_s = time.perf_counter() - started
    for batch in args.batch_sizes:
        for peer, make in parts.items():
            median, best = _median_ms(make(batch, args.sequence_length), args.repeats)
            row = {"peer": peer, "batch": batch, "sequence_length": args.sequence_length, "median_ms": median,
                   "min_ms": best, "load_s": load_s, "repeats": args.repeats}
            if not peer.endswith("_tokenizer"):  # the tokenizer alone runs no matmul
                row["gflops_per_s"] = bert_flops(sizes, batch, args.sequence_length) / median / 1e6
            _emit(row)


def summarize(rows, reference, int8_reference=None):
    """Per peer and batch, the median over rounds of each process's figures, and ratios.

    Args:
        rows: the workers' rows over all rounds: dicts with `peer`, `batch`, `median_ms` (one process's median
            call time) and optionally `min_ms`, `gflops_per_s`, `ms_per_token`, `first_call_ms`, `load_s`; or
            `peer` and `error` (a failed process).
        reference: the peer every ratio is taken against (same batch), e.g. "kzoo_onnx_fp32".
        int8_reference: the second reference of the peers whose name ends in "int8", e.g. "kzoo_onnx_int8".

    Returns:
        list of dicts, one per (peer, batch) in first-seen order: `rounds` (processes that timed it),
        `round_medians_ms`, each numeric figure's median over rounds, `requests_per_s` (batch / median_ms),
        `vs_<reference>` (median_ms over the reference's; absent when the reference has no timing at that batch)
        and `vs_<int8_reference>` for int8 peers; then one `{"peer", "error"}` per peer with a failed process.
    """
    groups, errors = {}, {}
    for row in rows:
        if "error" in row:
            errors.setdefault(row["peer"], row["error"])
        else:
            groups.setdefault((row["peer"], row["batch"]), []).append(row)
    summary = []
    for (peer, batch), group in groups.items():
        entry = {"peer": peer, "batch": batch, "rounds": len(group),
                 "round_medians_ms": [row["median_ms"] for row in group]}
        for key in ("median_ms", "min_ms", "gflops_per_s", "ms_per_token", "first_call_ms", "load_s"):
            values = [row[key] for row in group if key in row]
            if values:
                entry[key] = statistics.median(values)
        entry["requests_per_s"] = batch * 1000 / entry["median_ms"]
        summary.append(entry)
    timed = {(entry["peer"], entry["batch"]): entry["median_ms"] for entry in summary}
    for entry in summary:
        for name in (reference, int8_reference if entry["peer"].endswith("int8") else None):
            if name and (name, entry["batch"]) in timed:
                entry[f"vs_{name}"] = entry["median_ms"] / timed[(name, entry["batch"])]
    return summary + [{"peer": peer, "error": error} for peer, error in errors.items()]


def accuracy(run_dir, workdir):
    """Held-out accuracy of a bert_classify run: Keras, ONNX fp32 and ONNX int8 (same packed inputs)."""
    import numpy as np
    import yaml

    from kzoo import data
    from kzoo.export import export_onnx, quantize_onnx
    from kzoo.recipes.index import load_recipe
    from kzoo.recipes.outputs import load_run
    from kzoo.train.config import apply_mapping

    model, tokenizer, _, labels = load_run(run_dir)
    recipe = load_recipe("bert_classify")
    config = recipe.Config()
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as handle:
        saved = dict(yaml.safe_load(handle) or {})
    saved.pop("recipe", None)
    apply_mapping(config, saved)
    _, held_out = recipe.read_records(config, config.train.output_dir or run_dir)
    vocabulary = data.LabelVocabulary(labels)
    special = tokenizer.special_token_ids
    dataset = data.classification_dataset(
        held_out, tokenizer, vocabulary, sequence_length=config.data.sequence_length, cls_id=special["cls"],
        sep_id=special["sep"], pad_id=special["pad"], batch_size=64, on_unknown_label="skip",
        text_pair_key="text_pair" if config.data.text_pair_column else None)
    features, gold = [], []
    for batch, batch_labels in dataset:
        features.append({k: v.numpy().astype("int32") for k, v in batch.items()})
        gold.append(batch_labels.numpy())
    gold = np.concatenate(gold)
    keras_logits = np.concatenate([np.asarray(model(f)) for f in features])
    onnx_dir = os.path.join(workdir, "accuracy_onnx")
    export_onnx(model, onnx_dir)
    quantize_onnx(onnx_dir)
    scores = {"examples": int(gold.size), "keras": float((keras_logits.argmax(-1) == gold).mean())}
    for name, file_name in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx")):
        session = _ort(os.path.join(onnx_dir, file_name))
        names = [item.name for item in session.get_inputs()]
        logits = np.concatenate([session.run(["logits"], {k: v for k, v in f.items() if k in names})[0]
                                 for f in features])
        scores[name] = float((logits.argmax(-1) == gold).mean())
        scores[f"{name}_agreement_with_keras"] = float((logits.argmax(-1) == keras_logits.argmax(-1)).mean())
    return scores


def _run(command, timeout):
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment,
                              check=False)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout} s"
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == -9:  # the kernel's OOM killer, most often: stderr holds only start-up warnings
        return rows, "killed by SIGKILL (out of memory? see dmesg)"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-4:]
        return rows, f"exit {done.returncode}: " + " | ".join(tail)
    return rows, None


def _ratio(entry, name):
    value = entry.get(f"vs_{name}") if name else None
    return f"{value:.2f}x" if value is not None else "-"


def _rows(summary, header, peer_width, row):
    """`header`, a rule, then `row(entry, spread)` per `summarize` entry (an error row says why instead); `spread`
    is how far apart the rounds' medians are, as a fraction of the median."""
    lines = [header, "-" * len(header)]
    for entry in summary:
        if "error" in entry:
            lines.append(f"{entry['peer']:{peer_width}s}  {entry['error']}")
            continue
        spread = (max(entry["round_medians_ms"]) - min(entry["round_medians_ms"])) / entry["median_ms"]
        lines.append(row(entry, spread))
    return "\n".join(lines)


def _table(summary, reference, int8_reference=None):
    """The `summarize` entries as text: latency, requests/s and ratios per peer and batch (BERT)."""
    header = (f"{'peer':36s}{'batch':>6s}{'median ms':>11s}{'min ms':>9s}{'req/s':>9s}{'vs ' + reference:>22s}"
              f"{'vs ' + (int8_reference or ''):>22s}{'rounds':>7s}{'spread':>8s}{'load s':>8s}")

    def row(entry, spread):
        int8 = _ratio(entry, int8_reference) if entry["peer"].endswith("int8") else ""
        return (f"{entry['peer']:36s}{entry['batch']:>6d}{entry['median_ms']:>11.1f}{entry['min_ms']:>9.1f}"
                f"{entry['requests_per_s']:>9.1f}{_ratio(entry, reference):>22s}{int8:>22s}"
                f"{entry['rounds']:>7d}{100 * spread:>7.0f}%{entry['load_s']:>8.1f}")

    return _rows(summary, header, 36, row)


def _generation_table(summary, reference, new_tokens):
    """The `summarize` entries of a GPT-2 run: ms/token, call and first-call time, tokens/s, ratio."""
    header = (f"{'peer':28s}{'batch':>6s}{'ms/token':>10s}{'call ms':>10s}{'first ms':>10s}{'tokens/s':>10s}"
              f"{'req/s':>8s}{'vs ' + reference:>24s}{'rounds':>7s}{'spread':>8s}{'load s':>8s}")

    def row(entry, spread):
        tokens_per_s = entry["batch"] * new_tokens * 1000 / entry["median_ms"]
        return (f"{entry['peer']:28s}{entry['batch']:>6d}{entry['ms_per_token']:>10.2f}"
                f"{entry['median_ms']:>10.1f}{entry['first_call_ms']:>10.1f}{tokens_per_s:>10.1f}"
                f"{entry['requests_per_s']:>8.2f}{_ratio(entry, reference):>24s}{entry['rounds']:>7d}"
                f"{100 * spread:>7.0f}%{entry['load_s']:>8.1f}")

    return _rows(summary, header, 28, row)


def tokenizer_shares(summary):
    """batch -> the tokenizer-and-packing time's share of the text-in `classify` call (from `summarize`)."""
    timed = {(entry["peer"], entry["batch"]): entry["median_ms"] for entry in summary if "median_ms" in entry}
    return {batch: timed[("kzoo_savedmodel_classify_tokenizer", batch)] / ms
            for (peer, batch), ms in timed.items()
            if peer == "kzoo_savedmodel_classify" and ("kzoo_savedmodel_classify_tokenizer", batch) in timed}


def same_tokens(rows):
    """batch -> whether every generation process (each peer, each round) produced the same new tokens; None where
    fewer than two peers ran, so nothing was compared."""
    tokens = {}
    for row in rows:
        if "tokens" in row:
            tokens.setdefault(row["batch"], []).append((row["peer"], row["tokens"]))
    return {batch: all(t == found[0][1] for _, t in found) if len({peer for peer, _ in found}) > 1 else None
            for batch, found in tokens.items()}


def _efficiency_table(summary, ceiling, batch_sizes):
    """Achieved GFLOP/s per peer and batch (`summarize` entries), and its share of the matmul ceiling of the same
    precision."""
    limits = {(row["ceiling"], row["batch"]): row["gflops_per_s"] for row in ceiling}
    header = f"{'GFLOP/s (% of matmul ceiling)':32s}" + "".join(f"{'batch ' + str(b):>16s}" for b in batch_sizes)
    lines = [header, "-" * len(header)]
    for precision in ("fp32", "int8"):
        cells = "".join(f"{limits[(precision, b)]:>16.1f}" if (precision, b) in limits else f"{'-':>16s}"
                        for b in batch_sizes)
        lines.append(f"{'ceiling: one ' + precision + ' MatMul':32s}{cells}")
    for peer in dict.fromkeys(row["peer"] for row in summary if "gflops_per_s" in row):
        precision = "int8" if peer.endswith("int8") else "fp32"
        cells = ""
        for batch in batch_sizes:
            row = next((r for r in summary if r["peer"] == peer and r.get("batch") == batch), None)
            limit = limits.get((precision, batch))
            if row is None:
                cells += f"{'-':>16s}"
            else:
                share = f" ({100 * row['gflops_per_s'] / limit:.0f}%)" if limit else ""
                cells += f"{row['gflops_per_s']:>10.1f}{share:>6s}"
        lines.append(f"{peer:32s}{cells}")
    return "\n".join(lines)


def _processor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def _load_average():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PEERS), default="bert", help="bert (encoder) or gpt2 (generation)")
    parser.add_argument("--quick", action="store_true", help="tiny models, a few calls (a smoke run)")
    parser.add_argument("--peers", nargs="+", choices=[peer for peers in PEERS.values() for peer in peers],
                        help="default: every peer of --model")
    parser.add_argument("--rounds", type=int, default=1, help="times the whole sequence of peer processes runs")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--sequence-length", type=int, default=128, help="BERT")
    parser.add_argument("--prompt-length", type=int, default=16, help="GPT-2 prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="GPT-2 new tokens per row")
    parser.add_argument("--repeats", type=int, help="timed calls per process and batch (default BERT 20, GPT-2 5; "
                                                    "--quick 3 and 2)")
    parser.add_argument("--accuracy-run", help="a finished bert_classify run directory (int8 accuracy check)")
    parser.add_argument("--workdir", help="where artifacts go, created if missing (default: a temporary directory)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    parser.add_argument("--output", default="bench_export.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.peers = args.peers or list(PEERS[args.model])
    foreign = [peer for peer in args.peers if peer not in PEERS[args.model]]
    if foreign:
        parser.error(f"--peers {' '.join(foreign)} are not peers of --model {args.model}; choose from "
                     f"{', '.join(PEERS[args.model])}")
    for name in ("rounds", "prompt_length", "new_tokens", "sequence_length"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes must be at least 1, got {args.batch_sizes}")
    if args.accuracy_run and args.model != "bert":
        parser.error("--accuracy-run checks a bert_classify run: use it with --model bert")
    if args.repeats is None:
        args.repeats = (3 if args.quick else 20) if args.model == "bert" else (2 if args.quick else 5)
    return args


def _prepare(args, base):
    """Runs each prepare step the peers need; returns (results by kind, the kinds that failed)."""
    prepared, failed = {}, set()
    kinds = {ARTIFACT[peer] for peer in args.peers} - {None}
    if "kzoo_gpt2_onnx" in kinds:
        kinds.add("kzoo_gpt2")  # the weights and prompts the ONNX export and its peer use
    for kind in sorted(kinds):
        if kind == "kzoo_gpt2_onnx" and "kzoo_gpt2" in failed:
            result, error = [], "needs the weights of prepare kzoo_gpt2, which failed"
        else:
            result, error = _run([*base, "--worker", f"prepare_{kind}"], args.timeout)
        prepared[kind] = result[-1] if result else {"error": error}
        if error:
            failed.add(kind)
            print(f"prepare {kind}: {error}", flush=True)
        else:
            print(f"prepare {kind}: " + ", ".join(f"{k} {v:.1f}" for k, v in result[-1].items()
                                                 if isinstance(v, float)), flush=True)
    return prepared, failed


def main(argv=None):
    args = _parse(argv)
    if args.worker:
        worker(args)
        return 0
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="kzoo-bench-export-")
        args.workdir = scratch.name
    os.makedirs(args.workdir, exist_ok=True)
    load_start = _load_average()
    size = "tiny" if args.quick else ("base" if args.model == "bert" else "small")
    shape = (f"sequence {args.sequence_length}" if args.model == "bert"
             else f"prompt {args.prompt_length} tokens, {args.new_tokens} new tokens, greedy")
    print(f"{args.model} {size}, {shape}, batch {args.batch_sizes}, {args.rounds} round(s), {os.cpu_count()} CPUs, "
          f"load average {load_start}", flush=True)
    base = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--workdir", args.workdir,
            "--repeats", str(args.repeats), "--sequence-length", str(args.sequence_length),
            "--prompt-length", str(args.prompt_length), "--new-tokens", str(args.new_tokens),
            "--batch-sizes", *map(str, args.batch_sizes)]
    if args.quick:
        base.append("--quick")
    prepared, failed = _prepare(args, base)
    rows = []
    for round_index in range(args.rounds):
        for peer in args.peers:
            if ARTIFACT[peer] in failed:
                rows.append({"peer": peer, "round": round_index, "error": "its artifact could not be prepared"})
                continue
            result, error = _run([*base, "--worker", peer], args.timeout)
            rows.extend({**row, "round": round_index} for row in result)
            if error:
                rows.append({"peer": peer, "round": round_index, "error": error})
            print(f"round {round_index + 1}/{args.rounds} {peer}: " + (error or ", ".join(
                f"{row['peer'].removeprefix(peer) or 'batch'} {row['batch']} {row['median_ms']:.1f} ms"
                for row in result)), flush=True)
    reference, int8_reference = REFERENCES[args.model]
    summary = summarize(rows, reference, int8_reference)
    load_end = _load_average()
    report = {"model": args.model, "quick": args.quick, "sizes": model_sizes(args), "batch_sizes": args.batch_sizes,
              "rounds": args.rounds, "repeats": args.repeats, "cpus": os.cpu_count(),
              "load_average_at_start": load_start, "load_average_at_end": load_end, "machine": platform.machine(),
              "processor": _processor(), "prepared": prepared, "summary": summary, "results": rows}
    print()
    if args.model == "gpt2":
        report.update(prompt_length=args.prompt_length, new_tokens=args.new_tokens, same_tokens=same_tokens(rows))
        print(_generation_table(summary, reference, args.new_tokens))
        print("\nsame new tokens from every process: " + ", ".join(
            f"batch {batch} {({True: 'yes', False: 'NO', None: 'not compared (one peer ran)'})[same]}"
            for batch, same in report["same_tokens"].items()))
    else:
        ceiling, error = _run([*base, "--worker", "ceiling"], args.timeout)
        if error:
            print(f"matmul ceiling: {error}", flush=True)
        report.update(sequence_length=args.sequence_length, matmul_ceiling=ceiling,
                      tokenizer_share=tokenizer_shares(summary))
        print(_table(summary, reference, int8_reference))
        if report["tokenizer_share"]:
            print("\ntokenizer + packing share of classify: " + ", ".join(
                f"batch {batch} {100 * share:.1f}%" for batch, share in report["tokenizer_share"].items()))
        print()
        print(_efficiency_table(summary, ceiling, args.batch_sizes))
    print(f"\nload average: {load_start} at start, {load_end} at end ({os.cpu_count()} CPUs)")
    if args.accuracy_run:
        report["accuracy"] = accuracy(args.accuracy_run, args.workdir)
        print("\nint8 accuracy check on", args.accuracy_run, json.dumps(report["accuracy"]))
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.output}")
    if scratch is not None:
        scratch.cleanup()
    matched = False not in report.get("same_tokens", {}).values()
    return 0 if matched and all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
