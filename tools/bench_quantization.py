"""Quantized models and LoRA on this CPU: sizes, memory, serving latency, task accuracy, fine-tuning cost.

Four sections, each choosable (`--sections`), on BERT-base (`bert_base`, a 2-class `BertClassifier`) and GPT-2
small (`gpt2_small`, `GPTCausalLM`) with random weights (sizes and latency do not depend on the values):

1. `size`: per precision (fp32, Keras `model.quantize("int8")`, `model.quantize("int4")`, both through kzoo's
   `quantize_model`) the `.keras` file size, the exact bytes of the model's variables, and the peak resident memory
   (VmHWM) of a FRESH process that loads the `.keras` file with `kzoo.saving.load_model` and runs one forward pass
   (batch 1, `--sequence-length` tokens); its RSS right after importing kzoo/Keras/TensorFlow is given too (the
   frameworks' own share). A file that does not save or load is reported in its row, not worked around.
2. `latency`: batch 1, `--sequence-length` (128) tokens. BERT: one forward pass. GPT-2: greedy decoding of
   `--new-tokens` (32) after a `--sequence-length`-token prompt: ms per generated token over the whole call, the
   decode-only ms/token `(t(N) - t(1)) / (N - 1)` and the prefill (`t(1)`). Variants: Keras fp32/int8
   (`predict_on_batch`; GPT: `kzoo.generate.generate`), SavedModel fp32/int8 (`export_savedmodel`, reloaded with
   `tf.saved_model.load`; BERT through `serving_default`, GPT through `generate_with_options` at temperature 0,
   prompt text on a byte-level tokenizer so 1 byte = 1 token; its time includes that in-graph tokenization and
   the detokenization, small next to the model), ONNX Runtime fp32/int8 (`export_onnx` +
   `quantize_onnx`; GPT through `kzoo.export.onnx_generate.OnnxGenerator`). Artifacts are built in one process;
   all variants are then timed in ONE process, alternated round by round (the order rotating), so machine drift
   hits them alike: median and quartiles per variant, and the median of per-round ratios.
3. `accuracy`: a finished `kzoo train bert_classify` run (`--classify-run`, default runs/bert_classify): held-out
   accuracy and macro F1 of its model in fp32, int8 and int4, scored by the recipe's own evaluator (built from the
   run's config.yaml and tokenizer/, `--classify-examples` held-out examples), plus the share of predictions equal
   to fp32's. Skipped with a line when the run is absent.
4. `lora`: full fine-tuning vs LoRA (`Backbone.enable_lora(rank=8)`) of `gpt_tiny` (`GPTCausalLM`) and `bert_tiny`
   (2-class `BertClassifier`) at the batch size and length of the recipes gpt_finetune / bert_classify: trainable
   parameters; the exact bytes of trainable weights, gradients and optimizer state (what LoRA saves);
   `kzoo.train.Trainer`'s compiled step (optimizer `kzoo.train.optimization.build_optimizer` of the recipe's
   TrainConfig), both variants in one process, alternated; and the peak RSS of a fresh process per variant that
   builds, compiles and trains `--lora-memory-steps` steps.

Sections 1 and 2 run under TensorFlow (exports need it); 3 and 4 under `--backend`. Threads: `--threads 0` (the
default) leaves TensorFlow and ONNX Runtime their own defaults (all cores); N sets TensorFlow's intra/inter-op
pools and ONNX Runtime's intra-op pool to N. The settings are printed and written to the JSON.

Usage:
    .venv/bin/python tools/bench_quantization.py --output bench_quantization.json   # everything (~30 min, 2 CPUs)
    .venv/bin/python tools/bench_quantization.py --sections size latency --models gpt
    .venv/bin/python tools/bench_quantization.py --sections accuracy --classify-run runs/bert_classify
    .venv/bin/python tools/bench_quantization.py --sections lora --backend jax
    .venv/bin/python tools/bench_quantization.py --sections size latency --bert-preset bert_mini --gpt-preset gpt_tiny
    .venv/bin/python tools/bench_quantization.py --quick       # test presets, short runs (a smoke test)

Prints a markdown table per section and writes JSON (default `bench_quantization.json`).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.bench.timing import alternate, spread  # noqa: E402  (after ROOT is importable)


def quantize_model(model, mode):
    """kzoo's `quantize_model` (Keras' `model.quantize(mode)` on every projection), imported when first used."""
    from kzoo.models.quantization import quantize_model as quantize

    return quantize(model, mode)


SECTIONS = ("size", "latency", "accuracy", "lora")
MODES = ("fp32", "int8", "int4")
PRESETS = {False: {"bert": "bert_base", "gpt": "gpt2_small"}, True: {"bert": "bert_test", "gpt": "gpt_test"}}
LORA_PRESETS = {False: {"gpt": "gpt_tiny", "bert": "bert_tiny"}, True: {"gpt": "gpt_test", "bert": "bert_test"}}
# gpt_test's 128 ids are fewer than the 258 of `byte_level_tokenizer`, which the GPT SavedModel export carries.
PRESET_OVERRIDES = {"gpt_test": {"vocabulary_size": 512}}
LORA_RECIPES = {"gpt": "gpt_finetune", "bert": "bert_classify"}  # whose batch size, length and TrainConfig are used
LATENCY_VARIANTS = ("keras_fp32", "keras_int8", "savedmodel_fp32", "savedmodel_int8", "onnx_fp32", "onnx_int8")
LORA_RANK = 8
PROMPT_WORDS = "the quick brown fox jumps over a lazy dog while models learn from text "


# --- shared helpers (worker side) --------------------------------------------------------------------------------

def _set_up(backend, threads):
    """Backend and thread pools, before Keras or TensorFlow start."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _memory_mb():
    """(current RSS, peak RSS) of this process in MB, from /proc/self/status (VmRSS, VmHWM: this process image
    only, unlike ru_maxrss, which Linux carries over from the parent across fork + exec)."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount = line.split(":")
                values[name] = int(amount.split()[0]) / 1024  # kB -> MB
    return values["VmRSS"], values["VmHWM"]


def _variable_bytes(variables):
    """Exact bytes of `variables` (their shapes times their dtypes' item sizes; int4 kernels are packed two per
    int8 byte by Keras, so their stored dtype already says it)."""
    import math

    import numpy as np

    return sum(math.prod(v.shape) * np.dtype(str(v.dtype)).itemsize for v in variables)


def _example(kind, vocabulary_size, length, batch=1, seed=0):
    """Random model inputs: BERT `token_ids`, `segment_ids`, `padding_mask`; GPT `token_ids`, `padding_mask`;
    int32 `(batch, length)`, every position real."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {"token_ids": rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32"),
              "padding_mask": np.ones((batch, length), "int32")}
    if kind == "bert":
        inputs["segment_ids"] = np.zeros((batch, length), "int32")
    return inputs


def build_task(kind, preset, length, seed=0):
    """The built task model of `preset` (dropout off; `PRESET_OVERRIDES` applied): a 2-class `BertClassifier` or
    a `GPTCausalLM`, random weights drawn from `seed`."""
    import keras

    from kzoo import models

    keras.utils.set_random_seed(seed)
    overrides = {"dropout": 0.0, **PRESET_OVERRIDES.get(preset, {})}
    if kind == "bert":
        model = models.BertClassifier(models.from_preset(preset, attention_dropout=0.0, **overrides), num_classes=2,
                                      dropout=0.0)
    else:
        model = models.GPTCausalLM(models.from_preset(preset, **overrides))
    vocabulary_size = model.backbone.vocabulary_size
    model(_example(kind, vocabulary_size, min(length, 8)))
    return model


def _check_length(kind, preset, length, new_tokens):
    from kzoo.models.presets import get_preset

    try:
        found = get_preset(preset)
    except ValueError as error:
        raise SystemExit(f"bench_quantization: --{kind}-preset: {error}") from None
    if found.family != kind:
        raise SystemExit(f"bench_quantization: --{kind}-preset {preset} is a {found.family} preset; pass a {kind} one.")
    limit = found.config.max_sequence_length
    needed = length + (new_tokens if kind == "gpt" else 0)
    if needed > limit:
        raise SystemExit(f"bench_quantization: {needed} positions exceed max_sequence_length={limit} of preset "
                         f"{preset}; pass a shorter --sequence-length or fewer --new-tokens.")


def _emit(row):
    print(json.dumps(row, default=str), flush=True)


def _error(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"


def _folder_bytes(path):
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def byte_level_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer with one token per byte (256 tokens, plus one merge so keras-hub's
    merge table is not empty, and `<|endoftext|>`): a text of n ASCII characters is n tokens, so the SavedModel's
    text-in `generate` gets a prompt of exactly `--sequence-length` tokens."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    from kzoo.text import BytePairTokenizer

    _, alphabet = bytes_to_unicode()
    vocabulary = {symbol: index for index, symbol in enumerate(alphabet)}
    vocabulary["<|endoftext|>"] = len(vocabulary)
    vocabulary["\u0120\u0120"] = len(vocabulary)  # "  " (two spaces): never in the prompt text
    return BytePairTokenizer(vocabulary, ["\u0120 \u0120"])


def prompt_text(length):
    """`length` ASCII characters of words: `length` tokens on `byte_level_tokenizer`."""
    return (PROMPT_WORDS * (length // len(PROMPT_WORDS) + 1))[:length]


# --- section 1 and 2: artifacts ----------------------------------------------------------------------------------

def prepare(args):
    """Writes the .keras files (fp32, int8, int4) and, for latency, the SavedModel and ONNX exports of fp32 and
    int8; prints one JSON line per artifact: path and bytes, or the error."""
    from kzoo.export import export_onnx, export_savedmodel, quantize_onnx
    from kzoo.export.serving import ServingSettings

    kind, preset = args.model, args.preset
    _check_length(kind, preset, args.sequence_length, args.new_tokens)
    folder = os.path.join(args.workdir, kind)
    os.makedirs(folder, exist_ok=True)
    sizes = {}
    for mode in MODES:
        model = build_task(kind, preset, args.sequence_length)
        step = "quantize"
        try:
            if mode != "fp32":
                quantize_model(model, mode)
            sizes[mode] = _variable_bytes(model.weights)
            _emit({"artifact": f"weights_{mode}", "bytes": sizes[mode], "parameters": model.count_params()})
            step = "save"
            path = os.path.join(folder, f"model_{mode}.keras")
            started = time.perf_counter()
            model.save(path)
            _emit({"artifact": f"keras_{mode}", "path": path, "bytes": os.path.getsize(path),
                   "seconds": time.perf_counter() - started})
        except Exception as error:  # the failure is the row's result
            _emit({"artifact": f"keras_{mode}", "error": f"{step}: {_error(error)}"})
            continue
        if not args.exports or mode == "int4":
            continue
        tokenizer, settings = None, None
        if kind == "gpt":
            tokenizer = byte_level_tokenizer()
            settings = ServingSettings(sequence_length=args.sequence_length, max_new_tokens=args.new_tokens)
        try:
            started = time.perf_counter()
            result = export_savedmodel(model, os.path.join(folder, f"savedmodel_{mode}"), model_name="model",
                                       version=1, tokenizer=tokenizer, settings=settings, warmup=False,
                                       overwrite=True)
            _emit({"artifact": f"savedmodel_{mode}", "path": result.path, "bytes": _folder_bytes(result.path),
                   "seconds": time.perf_counter() - started})
        except Exception as error:
            _emit({"artifact": f"savedmodel_{mode}", "error": _error(error)})
        if mode == "fp32":
            onnx_dir = os.path.join(folder, "onnx")
            try:
                started = time.perf_counter()
                metadata = export_onnx(model, onnx_dir)
                seconds = time.perf_counter() - started
                files = {name: entry["file"] for name, entry in metadata["graphs"].items()}
                # "bytes": the forward graph `model` alone (one copy of the weights; a GPT export also has the
                # decoding graphs, each with its own copy); "bytes_all_graphs": every graph file.
                _emit({"artifact": "onnx_fp32", "path": onnx_dir, "files": files, "seconds": seconds,
                       "bytes": os.path.getsize(os.path.join(onnx_dir, files["model"])),
                       "bytes_all_graphs": sum(os.path.getsize(os.path.join(onnx_dir, f)) for f in files.values())})
                started = time.perf_counter()
                quantized = quantize_onnx(onnx_dir)
                _emit({"artifact": "onnx_int8", "path": onnx_dir, "seconds": time.perf_counter() - started,
                       "files": {name: os.path.basename(path) for name, path in quantized.items()},
                       "bytes": os.path.getsize(quantized["model"]),
                       "bytes_all_graphs": sum(os.path.getsize(path) for path in quantized.values())})
            except Exception as error:
                _emit({"artifact": "onnx_fp32", "error": _error(error)})


def memory(args):
    """One fresh process per precision: imports, loads the .keras file, runs one forward pass; prints RSS."""
    rss_imports, peak_imports = _memory_mb()
    from kzoo.saving import load_model

    row = {"model": args.model, "mode": args.mode, "rss_after_imports_mb": rss_imports,
           "peak_after_imports_mb": peak_imports}
    started = time.perf_counter()
    try:
        model = load_model(args.path)
    except Exception as error:
        _emit({**row, "error": f"load: {_error(error)}"})
        return
    row["load_s"] = time.perf_counter() - started
    row["rss_after_load_mb"] = _memory_mb()[0]
    row["variable_bytes"] = _variable_bytes(model.weights)
    inputs = _example(args.model, model.backbone.vocabulary_size, args.sequence_length)
    started = time.perf_counter()
    model(inputs)
    row["forward_s"] = time.perf_counter() - started
    row["rss_after_forward_mb"], row["peak_mb"] = _memory_mb()
    _emit(row)


# --- section 2: latency ------------------------------------------------------------------------------------------

def _ort_options(threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return options


def _keras_calls(kind, model, inputs, new_tokens):
    """{tokens: call}: BERT one forward pass (key 0), GPT greedy generation of 1 and `new_tokens` tokens."""
    if kind == "bert":
        return {0: lambda: model.predict_on_batch(inputs)}
    from kzoo.generate import generate

    prompts = inputs["token_ids"]

    def run(count):
        out = generate(model, prompts, max_new_tokens=count, strategy="greedy")
        return out.shape[-1]

    return {1: lambda: run(1), new_tokens: lambda: run(new_tokens)}


def _savedmodel_calls(kind, path, inputs, new_tokens, length):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers the tokenizer ops a text-in SavedModel uses

    loaded = tf.saved_model.load(path)
    if kind == "bert":
        function = loaded.signatures["serving_default"]
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        return {0: lambda: function(**tensors)}
    function = loaded.signatures["generate_with_options"]
    prompts = tf.constant([prompt_text(length)])

    def run(count):
        out = function(prompts=prompts, max_new_tokens=tf.constant(count), temperature=tf.constant(0.0),
                       top_p=tf.constant(1.0), seed=tf.constant(0))
        return int(out["num_tokens"].numpy()[0])

    return {1: lambda: run(1), new_tokens: lambda: run(new_tokens)}


def _onnx_calls(kind, artifact, int8, inputs, new_tokens, threads):
    import onnxruntime as ort

    from kzoo.export.onnx_generate import OnnxGenerator

    if kind == "bert":
        session = ort.InferenceSession(os.path.join(artifact["path"], artifact["files"]["model"]),
                                       _ort_options(threads), providers=["CPUExecutionProvider"])
        names = {item.name for item in session.get_inputs()}
        feed = {name: value for name, value in inputs.items() if name in names}
        return {0: lambda: session.run(None, feed)}
    generator = OnnxGenerator(artifact["path"], int8=int8, session_options=_ort_options(threads))
    prompts = inputs["token_ids"]

    def run(count):
        return generator.generate(prompts, max_new_tokens=count).shape[-1]

    return {1: lambda: run(1), new_tokens: lambda: run(new_tokens)}


def _variant_calls(args, artifacts, inputs):
    """{variant: {tokens: call}} for every variant that could be set up, and {variant: error} for the others."""
    calls, errors = {}, {}
    for variant in LATENCY_VARIANTS:
        runtime, mode = variant.split("_")
        try:
            if runtime == "keras":
                model = build_task(args.model, args.preset, args.sequence_length)
                if mode != "fp32":
                    quantize_model(model, mode)
                calls[variant] = _keras_calls(args.model, model, inputs, args.new_tokens)
            elif runtime == "savedmodel":
                artifact = artifacts.get(f"savedmodel_{mode}", {"error": "not exported"})
                if "error" in artifact:
                    raise RuntimeError(f"export failed: {artifact['error']}")
                calls[variant] = _savedmodel_calls(args.model, artifact["path"], inputs, args.new_tokens,
                                                   args.sequence_length)
            else:
                artifact = artifacts.get("onnx_fp32", {"error": "not exported"})
                if "error" in artifact:
                    raise RuntimeError(f"export failed: {artifact['error']}")
                calls[variant] = _onnx_calls(args.model, artifact, mode == "int8", inputs, args.new_tokens,
                                             args.threads)
        except Exception as error:  # the failure is the row's result
            errors[variant] = _error(error)
    # Warm-up (tracing, compilation, kernel caches) once every variant exists: building one can make another's
    # compiled function trace again.
    for variant in list(calls):
        try:
            for tokens, call in calls[variant].items():
                for _ in range(args.warmup):
                    produced = call()
                if tokens and produced != tokens:
                    raise RuntimeError(f"generated {produced} tokens instead of {tokens} (a stop token came early)")
        except Exception as error:  # the failure is the row's result
            calls.pop(variant)
            errors[variant] = _error(error)
    return calls, errors


def latency(args):
    """Sets up every variant in this process, alternates them, prints one JSON line per variant."""
    import keras

    with open(args.artifacts, encoding="utf-8") as handle:
        artifacts = json.load(handle)
    from kzoo.models.presets import get_preset

    vocabulary_size = PRESET_OVERRIDES.get(args.preset, {}).get(
        "vocabulary_size", get_preset(args.preset).config.vocabulary_size)
    inputs = _example(args.model, vocabulary_size, args.sequence_length)
    calls, errors = _variant_calls(args, artifacts, inputs)
    flat = {(variant, tokens): call for variant, by_tokens in calls.items() for tokens, call in by_tokens.items()}
    times = alternate(flat, args.rounds) if flat else {}
    for variant in LATENCY_VARIANTS:
        if variant in errors:
            _emit({"model": args.model, "variant": variant, "error": errors[variant]})
            continue
        row = {"model": args.model, "variant": variant, "rounds": args.rounds, "backend": keras.backend.backend()}
        if args.model == "bert":
            samples = [1e3 * s for s in times[(variant, 0)]]
            row.update(times_ms=samples, **{f"{k}_ms": v for k, v in spread(samples).items()})
        else:
            full, one = times[(variant, args.new_tokens)], times[(variant, 1)]
            per_token = [1e3 * s / args.new_tokens for s in full]
            decode = [1e3 * (n - p) / (args.new_tokens - 1) for n, p in zip(full, one, strict=True)]
            row.update(new_tokens=args.new_tokens, ms_per_token=spread(per_token), decode_ms_per_token=spread(decode),
                       prefill_ms=spread([1e3 * s for s in one]), times_s={"new_tokens": full, "one_token": one})
        _emit(row)


# --- section 3: accuracy -----------------------------------------------------------------------------------------

def accuracy(args):
    """Held-out accuracy of a bert_classify run's model in fp32, int8 and int4 (the recipe's own evaluator)."""
    import numpy as np
    import yaml

    from kzoo.data import LabelVocabulary
    from kzoo.recipes.index import load_recipe
    from kzoo.recipes.outputs import load_run
    from kzoo.run_directory import LABELS_FILE, RunDirectory
    from kzoo.train.config import apply_mapping

    run = RunDirectory(args.classify_run)
    with open(run.config, encoding="utf-8") as handle:
        saved = dict(yaml.safe_load(handle) or {})
    recipe_name = saved.pop("recipe", "bert_classify")
    if recipe_name != "bert_classify":
        raise SystemExit(f"bench_quantization: {args.classify_run} is a {recipe_name} run; pass a bert_classify run.")
    recipe = load_recipe("bert_classify")
    config = recipe.Config()
    apply_mapping(config, saved)
    config.data.tokenizer_dir = run.tokenizer  # the run's own vocabulary (a retrained one could differ)
    config.data.eval_examples = args.classify_examples
    with tempfile.TemporaryDirectory(prefix="bench_quantization_classify_") as workdir:
        parts = recipe.build(config, workdir)  # the default corpus is rewritten there (deterministic)
        _, _, _, run_labels = load_run(args.classify_run)
        built_labels = LabelVocabulary.load(parts.extra_files[LABELS_FILE]).labels
        if list(built_labels) != list(run_labels):
            raise SystemExit(f"bench_quantization: the run's labels {run_labels} differ from those its config gives "
                             f"now {built_labels}; was the training data changed?")
        score = parts.evaluators[0]
        reference = None
        for mode in MODES:
            model = load_run(args.classify_run).model
            row = {"mode": mode, "run": args.classify_run}
            try:
                if mode != "fp32":
                    quantize_model(model, mode)
                scores = score(model, {})
                predictions = np.asarray(model.predict(parts.eval_dataset, verbose=0)).argmax(-1)
            except Exception as error:
                _emit({**row, "error": _error(error)})
                continue
            reference = predictions if mode == "fp32" else reference
            row.update(accuracy=float(scores["accuracy"]), macro_f1=float(scores["macro_f1"]),
                       examples=int(predictions.size))
            if reference is not None:
                row["agreement_with_fp32"] = float((predictions == reference).mean())
            _emit(row)


# --- section 4: LoRA vs full fine-tuning -------------------------------------------------------------------------

def _lora_setup(kind, preset, variant, output_dir, steps_per_call):
    """(backend_steps, batches, info): the compiled steps of a `kzoo.train.Trainer` over a task model (full or
    LoRA) compiled with the recipe's optimizer, the endless stream of one random batch of the recipe's size, and
    the model's parameter and byte counts."""
    import numpy as np
    import tensorflow as tf

    from kzoo.models.lora import count_lora_parameters
    from kzoo.recipes.index import load_recipe
    from kzoo.train import Trainer, optimization
    from kzoo.train.strategy import resolve

    recipe = load_recipe(LORA_RECIPES[kind])
    recipe_config = recipe.Config()
    train = recipe_config.train
    train.output_dir, train.verbose = output_dir, 0
    train.log_every = train.steps_per_execution = steps_per_call
    train.eval_every = train.checkpoint_every = train.steps = 1_000_000
    length = recipe_config.data.sequence_length
    strategy = resolve(train)
    with strategy.scope():
        model = build_task(kind, preset, length)
        if variant == "lora":
            model.backbone.enable_lora(rank=LORA_RANK)
        model.compile(optimizer=optimization.build_optimizer(train, model.trainable_variables))
    batch_size, vocabulary_size = train.batch_size, model.backbone.vocabulary_size
    x = _example(kind, vocabulary_size, length, batch=batch_size, seed=1)
    rng = np.random.default_rng(2)
    if kind == "gpt":
        data = (x, rng.integers(0, vocabulary_size, size=(batch_size, length)).astype("int32"),
                np.ones((batch_size, length), "float32"))
    else:
        data = (x, rng.integers(0, 2, size=(batch_size,)).astype("int32"))
    dataset = tf.data.Dataset.from_tensors(data)
    trainer = Trainer(model, train, strategy, dataset, output_dir=output_dir)
    trainer.build_compiled_state()
    info = {
        "preset": preset, "recipe": LORA_RECIPES[kind], "batch_size": batch_size, "sequence_length": length,
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "lora_parameters": int(count_lora_parameters(model)),
        "trainable_bytes": _variable_bytes(model.trainable_variables),
        "optimizer_bytes": _variable_bytes(model.optimizer.variables),
    }
    # Gradients are one tensor per trainable variable, the same size: the step's transient share LoRA also saves.
    info["gradient_bytes"] = info["trainable_bytes"]
    info["training_state_bytes"] = 2 * info["trainable_bytes"] + info["optimizer_bytes"]
    return trainer.backend_steps, trainer.backend_steps.train_batches(dataset, 0), info


def lora_steps(args):
    """Both variants in this process, their compiled steps alternated; one JSON line per variant."""
    import keras

    calls, infos = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_quantization_lora_") as output_dir:
        for variant in ("full", "lora"):
            steps, batches, infos[variant] = _lora_setup(args.model, args.preset, variant,
                                                         os.path.join(output_dir, variant), args.steps_per_call)

            def call(steps=steps, batches=batches):
                losses = steps.train(batches, args.steps_per_call)[0]
                return float(losses[-1])

            calls[variant] = call
        for _ in range(args.warmup):  # once both exist (building one can make the other's step trace again)
            for call in calls.values():
                call()
        times = alternate(calls, args.rounds)
    ratios = [lora / full for full, lora in zip(times["full"], times["lora"], strict=True)]
    for variant in ("full", "lora"):
        samples = [1e3 * s / args.steps_per_call for s in times[variant]]
        row = {"model": args.model, "variant": variant, **infos[variant], "backend": keras.backend.backend(),
               "steps_per_call": args.steps_per_call, "rounds": args.rounds, "step_times_ms": samples,
               **{f"step_{k}_ms": v for k, v in spread(samples).items()}}
        if variant == "lora":
            row["step_ratio_lora_to_full"] = spread(ratios)
        _emit(row)


def lora_memory(args):
    """One fresh process per variant: build, compile, train `--lora-memory-steps` steps; prints RSS."""
    rss_imports, _ = _memory_mb()
    with tempfile.TemporaryDirectory(prefix="bench_quantization_lora_memory_") as output_dir:
        steps, batches, info = _lora_setup(args.model, args.preset, args.variant, output_dir, 1)
        rss_built = _memory_mb()[0]
        for _ in range(args.lora_memory_steps):
            steps.train(batches, 1)
    rss, peak = _memory_mb()
    _emit({"model": args.model, "variant": args.variant, "rss_after_imports_mb": rss_imports,
           "rss_after_build_mb": rss_built, "rss_after_training_mb": rss, "peak_mb": peak,
           "steps": args.lora_memory_steps})


WORKERS = {"prepare": prepare, "memory": memory, "latency": latency, "accuracy": accuracy,
           "lora_steps": lora_steps, "lora_memory": lora_memory}


# --- the parent: subprocesses, tables, JSON ----------------------------------------------------------------------

def _run(args, worker, backend="tensorflow", **options):
    """Runs `worker` in a fresh process; returns (JSON rows it printed, error line or None)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--backend", backend,
               "--threads", str(args.threads), "--sequence-length", str(args.sequence_length),
               "--new-tokens", str(args.new_tokens), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
               "--steps-per-call", str(args.steps_per_call), "--lora-memory-steps", str(args.lora_memory_steps),
               "--classify-examples", str(args.classify_examples), "--workdir", args.workdir]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=environment,
                              check=False, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {args.timeout} s"
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines()
                 if not re.match(r"[IWE]\d{4} |WARNING: All log messages", line)]  # TensorFlow's C++ log lines
        return rows, f"exit {done.returncode}: " + " | ".join(lines[-3:])
    return rows, None


def markdown(headers, rows):
    """A markdown table: `headers` and rows of cells (str)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(value):
    return "-" if value is None else f"{value / 2**20:.1f}"


def _bytes(value):
    """`value` bytes in KB below 1 MB, else MB (LoRA's state is kilobytes)."""
    return "-" if value is None else f"{value / 2**10:.1f} KB" if value < 2**20 else f"{value / 2**20:.1f} MB"


def _q(stats, digits=1):
    return f"{stats['median']:.{digits}f} ({stats['q1']:.{digits}f}-{stats['q3']:.{digits}f})"


def size_section(args, kind, artifacts):
    rows = []
    for mode in MODES:
        saved = artifacts.get(f"keras_{mode}", {"error": "not prepared"})
        row = {"model": kind, "preset": args.presets[kind], "mode": mode,
               "variable_bytes": artifacts.get(f"weights_{mode}", {}).get("bytes"), "keras_bytes": saved.get("bytes"),
               "savedmodel_bytes": artifacts.get(f"savedmodel_{mode}", {}).get("bytes"),
               "onnx_bytes": artifacts.get(f"onnx_{mode}", {}).get("bytes")}
        if "error" in saved:
            row["error"] = saved["error"]
        else:
            measured, error = _run(args, "memory", model=kind, mode=mode, path=saved["path"])
            row.update({k: v for k, v in (measured[-1] if measured else {}).items() if k not in ("model", "mode")})
            if error and "error" not in row:
                row["error"] = error
        rows.append(row)
        print(f"size {kind} {mode}: " + (row.get("error") or f"peak {row.get('peak_mb', 0):.0f} MB"), flush=True)
    return rows


def size_table(rows):
    cells = []
    for row in rows:
        rss = [f"{row[name]:.0f}" if name in row else "-"
               for name in ("peak_mb", "rss_after_load_mb", "rss_after_imports_mb")]
        cells.append([row["preset"], row["mode"], _mb(row["keras_bytes"]), _mb(row["variable_bytes"]),
                      _mb(row["savedmodel_bytes"]), _mb(row["onnx_bytes"]), *rss, row.get("error", "")])
    return markdown(["model", "weights", ".keras MB", "variables MB", "SavedModel MB", "ONNX MB (model graph)",
                     "peak RSS MB", "RSS after load MB", "RSS after imports MB", "note"], cells)


def latency_table(rows, kind):
    by_variant = {row["variant"]: row for row in rows}
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row["variant"]] + ["-"] * (4 if kind == "gpt" else 2) + [row["error"]])
            continue
        runtime, mode = row["variant"].split("_")
        baseline = by_variant.get(f"{runtime}_fp32", {})
        if kind == "bert":
            ratio = "" if mode == "fp32" or "error" in baseline else \
                _ratio(row["times_ms"], baseline["times_ms"])
            cells.append([row["variant"], _q({k: row[f"{k}_ms"] for k in ("median", "q1", "q3")}), ratio, ""])
        else:
            ratio = "" if mode == "fp32" or "error" in baseline else \
                _ratio(row["times_s"]["new_tokens"], baseline["times_s"]["new_tokens"])
            cells.append([row["variant"], _q(row["ms_per_token"]), _q(row["decode_ms_per_token"]),
                          _q(row["prefill_ms"]), ratio, ""])
    if kind == "bert":
        return markdown(["variant", "forward ms: median (q1-q3)", "int8/fp32 (same runtime)", "note"], cells)
    return markdown(["variant", "ms/token, whole call", "decode ms/token", "prefill ms", "int8/fp32 (same runtime)",
                     "note"], cells)


def _ratio(values, baseline):
    return _q(spread([a / b for a, b in zip(values, baseline, strict=True)]), 2)


def accuracy_table(rows):
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row["mode"], "-", "-", "-", "-", row["error"]])
            continue
        fp32 = next((r for r in rows if r["mode"] == "fp32" and "accuracy" in r), None)
        change = "" if fp32 is None or row["mode"] == "fp32" else \
            f"{100 * (row['accuracy'] - fp32['accuracy']):+.1f}"
        agreement = f"{100 * row['agreement_with_fp32']:.1f}%" if "agreement_with_fp32" in row else "-"
        cells.append([row["mode"], f"{row['accuracy']:.4f}", change, f"{row['macro_f1']:.4f}", agreement, ""])
    return markdown(["weights", "held-out accuracy", "change (points)", "macro F1", "same prediction as fp32",
                     "note"], cells)


def lora_table(rows):
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row.get("preset", row["model"]), row["variant"]] + ["-"] * 6 + [row["error"]])
            continue
        ratio = _q(row["step_ratio_lora_to_full"], 2) if "step_ratio_lora_to_full" in row else ""
        peak = f"{row['peak_mb']:.0f}" if "peak_mb" in row else "-"
        cells.append([row["preset"], row["variant"], f"{row['trainable_parameters']:,} of {row['parameters']:,}",
                      _bytes(row["trainable_bytes"]), _bytes(row["optimizer_bytes"]),
                      _bytes(row["training_state_bytes"]),
                      _q({k: row[f"step_{k}_ms"] for k in ("median", "q1", "q3")}), ratio, peak])
    return markdown(["model", "training", "trainable parameters", "trainable weights", "optimizer state",
                     "trainable + gradients + optimizer", "step ms: median (q1-q3)", "LoRA/full step", "peak RSS MB"],
                    cells)


def _thread_line(threads):
    cores = os.cpu_count()
    if threads:
        return f"{threads} thread(s): TensorFlow intra/inter-op pools and ONNX Runtime intra-op pool"
    return f"library defaults on {cores} CPUs (TensorFlow intra/inter-op: all cores; ONNX Runtime: physical cores)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--models", nargs="+", choices=("bert", "gpt"), default=["bert", "gpt"],
                        help="models of the size, latency and lora sections")
    parser.add_argument("--quick", action="store_true",
                        help="test presets (bert_test, gpt_test), sequence 32, 4 new tokens, 3 rounds (a smoke run)")
    parser.add_argument("--bert-preset", help="size/latency BERT preset (default bert_base; --quick bert_test)")
    parser.add_argument("--gpt-preset", help="size/latency GPT preset (default gpt2_small; --quick gpt_test)")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow",
                        help="Keras backend of the accuracy and lora sections (size and latency: TensorFlow)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: the libraries' defaults)")
    parser.add_argument("--sequence-length", type=int, help="tokens per input / GPT prompt (default 128)")
    parser.add_argument("--new-tokens", type=int, help="GPT tokens generated per call (default 32)")
    parser.add_argument("--rounds", type=int, help="timed rounds, each variant once per round (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed calls of each variant first (default 2)")
    parser.add_argument("--steps-per-call", type=int, default=1, help="lora: train steps per compiled call")
    parser.add_argument("--lora-memory-steps", type=int, default=5, help="lora: steps of the memory processes")
    parser.add_argument("--classify-run", default="runs/bert_classify", help="accuracy: a bert_classify run")
    parser.add_argument("--classify-examples", type=int, default=0,
                        help="accuracy: held-out examples scored (0: the whole held-out split)")
    parser.add_argument("--workdir", help="where artifacts go (default: a temporary directory)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per process")
    parser.add_argument("--output", default="bench_quantization.json")
    for hidden in ("worker", "model", "mode", "path", "preset", "artifacts", "variant"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    parser.add_argument("--exports", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = (32, 4, 3, 1) if args.quick else (128, 32, 10, 2)
    for name, value in zip(("sequence_length", "new_tokens", "rounds", "warmup"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.sequence_length, args.new_tokens, args.rounds, args.steps_per_call) < 1 or args.new_tokens < 2:
        parser.error("--sequence-length, --rounds and --steps-per-call must be >= 1 and --new-tokens >= 2")
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first call traces and compiles)")
    if args.worker:
        _set_up(args.backend, args.threads)
        WORKERS[args.worker](args)
        return 0
    return _parent(args)


def _parent(args):
    args.presets, lora_presets = dict(PRESETS[args.quick]), LORA_PRESETS[args.quick]
    args.presets.update({kind: name for kind, name in (("bert", args.bert_preset), ("gpt", args.gpt_preset)) if name})
    args.classify_run = os.path.abspath(args.classify_run)  # the workers run in the repository root
    scratch = None
    if args.workdir is not None:
        args.workdir = os.path.abspath(args.workdir)
    else:
        scratch = tempfile.TemporaryDirectory(prefix="bench_quantization_")
        args.workdir = scratch.name
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    settings = {"sections": args.sections, "models": args.models, "quick": args.quick, "threads": args.threads,
                "thread_settings": _thread_line(args.threads), "sequence_length": args.sequence_length,
                "new_tokens": args.new_tokens, "rounds": args.rounds, "warmup": args.warmup,
                "backend_accuracy_lora": args.backend, "cpus": os.cpu_count(), "machine": platform.machine(),
                "load_average_at_start": load, "presets": args.presets, "lora_presets": lora_presets,
                "lora_rank": LORA_RANK}
    print(f"bench_quantization: {', '.join(args.sections)}; {_thread_line(args.threads)}; load average {load}",
          flush=True)
    report, failed = {"settings": settings}, False
    for kind in args.models if {"size", "latency"} & set(args.sections) else ():
        preset = args.presets[kind]
        rows, error = _run(args, "prepare", model=kind, preset=preset, exports=int("latency" in args.sections))
        artifacts = {row["artifact"]: row for row in rows}
        report.setdefault("artifacts", {})[kind] = artifacts
        if error:
            print(f"prepare {kind}: {error}", flush=True)
            failed = True
            if not rows:  # nothing was built (e.g. a sequence longer than the preset's positions)
                continue
        if "size" in args.sections:
            rows = size_section(args, kind, artifacts)
            report.setdefault("size", []).extend(rows)
        if "latency" in args.sections:
            path = os.path.join(args.workdir, f"artifacts_{kind}.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(artifacts, handle)
            rows, error = _run(args, "latency", model=kind, preset=preset, artifacts=path)
            if error:
                rows.append({"model": kind, "variant": "all", "error": error})
            report.setdefault("latency", {})[kind] = rows
    if "accuracy" in args.sections:
        if not os.path.isfile(os.path.join(args.classify_run, "model.keras")):
            print(f"accuracy: skipped: no bert_classify run at {args.classify_run} (train one with `kzoo train "
                  f"bert_classify --train.output_dir={args.classify_run}`, or pass --classify-run)", flush=True)
            report["accuracy"] = {"skipped": f"no run at {args.classify_run}"}
        else:
            rows, error = _run(args, "accuracy", backend=args.backend, classify_run=args.classify_run)
            if error:
                rows.append({"mode": "all", "error": error})
            report["accuracy"] = rows
    if "lora" in args.sections:
        report["lora"] = _lora_section(args, lora_presets)
    _print_tables(report, args)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=str)
    print(f"\nwrote {args.output}")
    if scratch is not None:
        scratch.cleanup()
    return 1 if failed else 0


def _lora_section(args, lora_presets):
    rows = []
    for kind in args.models:
        preset = lora_presets[kind]
        timed, error = _run(args, "lora_steps", backend=args.backend, model=kind, preset=preset)
        if error:
            timed = [{"model": kind, "preset": preset, "variant": variant, "error": error}
                     for variant in ("full", "lora")]
        for row in timed:
            measured, error = _run(args, "lora_memory", backend=args.backend, model=kind, preset=preset,
                                   variant=row["variant"])
            row.update({k: v for k, v in (measured[-1] if measured else {}).items() if k not in ("model", "variant")})
            if error and "error" not in row:
                row["memory_error"] = error
            rows.append(row)
        print(f"lora {kind}: done", flush=True)
    return rows


def _print_tables(report, args):
    if "size" in report:
        print(f"\n### Weights on disk and peak memory (load + one forward pass, batch 1, {args.sequence_length} "
              "tokens, a fresh process each)\n")
        print(size_table(report["size"]))
    for kind, rows in report.get("latency", {}).items():
        what = (f"one forward pass, batch 1, {args.sequence_length} tokens" if kind == "bert" else
                f"greedy, batch 1, {args.sequence_length}-token prompt, {args.new_tokens} new tokens")
        print(f"\n### Latency: {args.presets[kind]} ({what}); {args.rounds} alternated rounds, "
              f"{_thread_line(args.threads)}\n")
        print(latency_table(rows, kind))
    if isinstance(report.get("accuracy"), list):
        print(f"\n### bert_classify held-out accuracy ({args.classify_run})\n")
        print(accuracy_table(report["accuracy"]))
    elif "accuracy" in report:
        print(f"\n### bert_classify held-out accuracy: skipped ({report['accuracy']['skipped']})")
    if "lora" in report:
        print(f"\n### LoRA (rank {LORA_RANK}, query+value) vs full fine-tuning, {args.backend}; the recipes' "
              f"batch and length; step times alternated in one process, peak RSS a fresh process each\n")
        print(lora_table(report["lora"]))


if __name__ == "__main__":
    sys.exit(main())
