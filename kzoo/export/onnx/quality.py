"""`int8_quality`: the int8 graphs of an export judged by the task metric they lose against the fp32 graphs.

Numeric drift (what `verify_onnx` reports for int8) says little about whether a quantized model still does its job,
so the int8 and the fp32 graphs are both run in ONNX Runtime on the same examples and scored with the model's own
task metric, in percent:

    BertClassifier       accuracy                     argmax of `logits` equals the gold class
    BertTokenClassifier  entity F1                    BIO entities of each word's first sub-token
                                                      (`kzoo.metrics.word_level_tags`, `entity_scores`), tag names
                                                      from the export's labels
    BertSpanQA           exact span match             the best span (`kzoo.metrics.best_span` over real tokens,
                                                      at most 30 sub-tokens) has the gold start and end
    BertPretrainer       masked-token accuracy        argmax of `mlm_logits` at each weighted mask position
    GPTCausalLM          greedy token agreement       int8 greedy tokens equal to fp32 greedy tokens, position by
    Seq2SeqLM                                         position (`OnnxGenerator`, 16 new tokens, no stop token);
                                                      the fp32 side scores 100 by definition

The drop is `fp32 - int8` in points; the gate passes when it is at most `max_drop` (default 1 point).

The examples: a `kzoo.recipes.heldout` sample (a run directory's `heldout.npz`, the first 256 held-out examples of
its recipe, with gold targets). Generation takes its prompts from it: the first 16 tokens of each held-out GPT
window, each seq2seq source. Without a sample (a lone .keras file) the label tasks are scored by agreement of the
int8 predictions with the fp32 predictions on random valid inputs (64 rows of 32 tokens), and generation starts from
random prompts (16 of 8 tokens); the report says which was used. A generative model exported without its decoding
graphs is judged by teacher-forced next-token agreement of the forward graph; a bare backbone has no task metric and
is not judged (reported as such).

`int8_quality` runs the graphs and records its report in `export.json` (`int8_quality`); `task_scores` computes the
label tasks' figures from two sets of forward outputs (NumPy only); `format_quality` prints the report.
"""

import dataclasses
import json
import math
import os

import numpy as np

from kzoo.export.onnx.convert import METADATA_FILE, load_metadata

DEFAULT_MAX_DROP = 1.0  # points of the metric in percent
MAX_EXAMPLES = 256  # rows scored from a held-out sample (label tasks)
RANDOM_ROWS, RANDOM_LENGTH = 64, 32  # random inputs when there is no held-out sample
PROMPTS, PROMPT_TOKENS, RANDOM_PROMPT_TOKENS, NEW_TOKENS = 32, 16, 8, 16  # generation
MAX_ANSWER_LENGTH = 30  # sub-tokens of a predicted span (kzoo.metrics.best_span's default)
BATCH = 32  # rows per ONNX Runtime call


@dataclasses.dataclass(frozen=True)
class Scores:
    """The task metric of the fp32 and the int8 graphs on the same items, in percent."""

    metric: str
    fp32: float
    int8: float
    count: int
    unit: str
    examples: int = 0  # rows or prompts used (set by the caller)


# === Running the forward graph ===


def _sessions(export_dir, entry):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return [ort.InferenceSession(os.path.join(export_dir, entry[key]), options, providers=["CPUExecutionProvider"])
            for key in ("file", "int8_file")]


def _run(session, inputs):
    """All outputs of `session` over `inputs` ({name: (n, ...) array}), `BATCH` rows a call; ValueError for rows the
    graph flags in `invalid_inputs` (ids outside the model's ranges)."""
    names = [o.name for o in session.get_outputs()]
    rows = len(next(iter(inputs.values())))
    chunks = {name: [] for name in names}
    for start in range(0, rows, BATCH):
        feeds = {name: np.asarray(value[start:start + BATCH], np.int32) for name, value in inputs.items()}
        for name, value in zip(names, session.run(names, feeds), strict=True):
            chunks[name].append(value)
    outputs = {name: np.concatenate(values) for name, values in chunks.items()}
    invalid = np.flatnonzero(outputs.get("invalid_inputs", np.zeros(0, bool)))
    if invalid.size:
        raise ValueError(f"int8 quality: rows {invalid[:5].tolist()} of the examples hold ids outside the model's "
                         "ranges (vocabulary, segments, positions); the held-out sample was not made for this model.")
    return outputs


def _graph_inputs(entry, sample_inputs, config, model_class):
    """The forward graph's inputs taken from a held-out sample, checked against the export."""
    names = [spec["name"] for spec in entry["inputs"]]
    missing = [name for name in names if name not in sample_inputs]
    if missing:
        raise ValueError(f"int8 quality: the held-out sample has no {missing} input, which the {model_class} graph "
                         f"needs (it has {sorted(sample_inputs)}); pass the sample saved with this model's run.")
    inputs = {name: np.asarray(sample_inputs[name]) for name in names}
    limit = config.get("max_sequence_length")
    width = max(value.shape[1] for value in inputs.values() if value.ndim > 1)
    if limit and width > limit and config.get("position_embedding") != "relative":
        raise ValueError(f"int8 quality: the held-out examples are {width} tokens long, more than the model's "
                         f"max_sequence_length={limit}; pass the sample saved with this model's run.")
    return inputs


def _random_inputs(entry, config, rng):
    """Valid random inputs of the forward graph: `RANDOM_ROWS` rows of up to `RANDOM_LENGTH` tokens, right padded."""
    length = min(RANDOM_LENGTH, int(config.get("max_sequence_length") or RANDOM_LENGTH))
    lengths = rng.integers(max(length // 2, 2), length + 1, RANDOM_ROWS)
    real = np.arange(length)[None, :] < lengths[:, None]
    inputs = {}
    for spec in entry["inputs"]:
        kind = spec["kind"]
        if kind == "token_ids":
            value = rng.integers(0, int(config["vocabulary_size"]), (RANDOM_ROWS, length))
        elif kind == "segment_ids":
            value = np.zeros((RANDOM_ROWS, length), np.int64)
        elif kind == "padding_mask":
            value = real
        elif kind == "mask_positions":
            value = np.sort(rng.integers(1, lengths.min(), (RANDOM_ROWS, min(5, lengths.min() - 1))), axis=1)
        else:
            raise ValueError(f"int8 quality: cannot draw random values for the {spec['name']!r} input "
                             f"(kind {kind!r}).")
        inputs[spec["name"]] = value.astype(np.int32)
    return inputs


# === Label tasks: predictions, gold scores, agreement ===


def _percent(hits, weights=None):
    hits = np.asarray(hits, np.float64)
    weights = np.ones_like(hits) if weights is None else np.asarray(weights, np.float64)
    return 100.0 * float((hits * weights).sum() / weights.sum()) if weights.sum() > 0 else 0.0


def _entity_f1(predictions, gold_ids, first_subword, labels):
    from kzoo.metrics import entity_scores, word_level_tags

    try:
        gold = word_level_tags(gold_ids, first_subword, labels)
        return 100.0 * entity_scores(gold, word_level_tags(predictions, first_subword, labels))["f1"]
    except ValueError as error:
        raise ValueError(f"int8 quality: entity F1 needs BIO tag names ('O', 'B-PER', ...) for the tagger's "
                         f"classes; the export's labels {labels[:5]}... do not parse ({error}); pass --labels "
                         "with the run's labels.json.") from error


def task_scores(model_class, fp32_outputs, int8_outputs, inputs, sample=None, labels=None):
    """The task metric of the fp32 and the int8 forward graphs' outputs on the same inputs (NumPy only).

    Args:
        model_class: "BertClassifier", "BertTokenClassifier", "BertSpanQA", "BertPretrainer" (scored against the
            gold targets, or by agreement with the fp32 predictions when there are none), "GPTCausalLM" or
            "Seq2SeqLM" (teacher-forced next-token agreement with fp32 over real positions).
        fp32_outputs, int8_outputs: {output name: array} of the forward graphs, rows as in `inputs`: `logits`
            (b, C) or (b, s, C); `start_logits`, `end_logits` (b, s); `mlm_logits` (b, p, V).
        inputs: {name: int array (b, ...)} fed to both; `padding_mask` (b, s) marks real tokens.
        sample: an object with `targets` and `sample_weights` (a `HeldoutSample` cut to the same rows) or None.
            Targets: class ids (b,); tag ids (b, s) with weights (b, s) > 0 on each word's first sub-token;
            {"start_logits", "end_logits"} positions (b,); {"mlm_logits": ids (b, p)} with weights
            {"mlm_logits": (b, p)}.
        labels: tag names in id order (BIO: "O", "B-PER", ...), for the tagger's entity F1.

    Returns:
        a `Scores`.

    Raises:
        ValueError: a tagger without sample weights or with tag names that are not BIO.
    """
    from kzoo.metrics import best_span

    outputs = (fp32_outputs, int8_outputs)
    if model_class in ("GPTCausalLM", "Seq2SeqLM"):
        return _next_token_agreement(outputs, inputs)
    targets = None if sample is None else sample.targets
    weights = None if sample is None else sample.sample_weights
    real = np.asarray(inputs["padding_mask"]).astype(bool)
    if model_class == "BertClassifier":
        predicted = [side["logits"].argmax(-1) for side in outputs]
        if targets is None:
            return Scores("class agreement with fp32", 100.0, _percent(predicted[0] == predicted[1]),
                          len(real), "examples")
        gold = np.asarray(targets).reshape(-1)
        return Scores("accuracy", *(_percent(p == gold) for p in predicted), len(real), "examples")
    if model_class == "BertTokenClassifier":
        predicted = [side["logits"].argmax(-1) for side in outputs]
        if targets is None:
            return Scores("sub-token tag agreement with fp32", 100.0, _percent(predicted[0] == predicted[1], real),
                          int(real.sum()), "tokens")
        if weights is None or labels is None:
            raise ValueError("int8 quality: entity F1 needs the held-out sample's sample weights (each word's first "
                             "sub-token) and the tag names; pass a heldout.npz from a bert_ner run.")
        first = np.asarray(weights) > 0
        return Scores("entity F1", *(_entity_f1(p, np.asarray(targets), first, labels) for p in predicted),
                      len(real), "examples")
    if model_class == "BertSpanQA":
        spans = [np.stack(best_span(side["start_logits"], side["end_logits"], MAX_ANSWER_LENGTH, real)[:2], axis=1)
                 for side in outputs]
        if targets is None:
            return Scores("span agreement with fp32", 100.0, _percent((spans[0] == spans[1]).all(1)), len(real),
                          "examples")
        gold = np.stack([np.asarray(targets["start_logits"]), np.asarray(targets["end_logits"])], axis=1)
        return Scores("exact span match", *(_percent((s == gold).all(1)) for s in spans), len(real), "examples")
    if model_class == "BertPretrainer":
        predicted = [side["mlm_logits"].argmax(-1) for side in outputs]
        if targets is None:
            return Scores("masked-token agreement with fp32", 100.0, _percent(predicted[0] == predicted[1]),
                          predicted[0].size, "masked tokens")
        gold = np.asarray(targets["mlm_logits"])
        slots = np.ones(gold.shape) if weights is None else np.asarray(weights["mlm_logits"])
        return Scores("masked-token accuracy", *(_percent(p == gold, slots) for p in predicted),
                      int((slots > 0).sum()), "masked tokens")
    raise ValueError(f"int8 quality: no task metric for a {model_class}.")


def _next_token_agreement(outputs, inputs):
    """Teacher-forced agreement of the forward graphs' next-token argmax over real positions."""
    mask = inputs.get("decoder_padding_mask", inputs.get("padding_mask"))
    real = np.asarray(mask).astype(bool)
    predicted = [side["logits"].argmax(-1) for side in outputs]
    return Scores("teacher-forced next-token agreement with fp32", 100.0,
                  _percent(predicted[0] == predicted[1], real), int(real.sum()), "tokens")


# === Generation ===


def _prompts(metadata, sample, rng, decoder_start_id):
    """(ids (b, P), mask (b, P), decoder start id, where from) for greedy generation."""
    sizes = metadata["decoding"]
    if sample is None:
        ids = rng.integers(0, sizes["vocabulary_size"], (PROMPTS // 2, RANDOM_PROMPT_TOKENS))
        where = f"{len(ids)} random prompts of {RANDOM_PROMPT_TOKENS} tokens"
        return ids, np.ones_like(ids), 0 if decoder_start_id is None else decoder_start_id, where
    inputs = sample.inputs
    if metadata["family"] == "gpt":
        if "token_ids" not in inputs:
            raise ValueError(f"int8 quality: the held-out sample has no token_ids (it has {sorted(inputs)}); pass "
                             "the sample saved with this model's run.")
        ids = np.asarray(inputs["token_ids"])[:PROMPTS]
        mask = np.asarray(inputs.get("padding_mask", np.ones_like(ids)))[:PROMPTS]
        width = min(PROMPT_TOKENS, max(ids.shape[1] // 2, 1))
        ids, mask, start = ids[:, :width], mask[:, :width], None
        where = f"the first {width} tokens of {{}} held-out windows"
    else:
        if "encoder_token_ids" not in inputs:
            raise ValueError(f"int8 quality: the held-out sample has no encoder_token_ids (it has {sorted(inputs)}); "
                             "pass the sample saved with this model's run.")
        ids = np.asarray(inputs["encoder_token_ids"])[:PROMPTS]
        mask = np.asarray(inputs.get("encoder_padding_mask", np.ones_like(ids)))[:PROMPTS]
        start = decoder_start_id
        if start is None:
            start = int(inputs["decoder_token_ids"][0, 0]) if "decoder_token_ids" in inputs else 0
        where = "{} held-out sources"
    keep = mask.astype(bool).any(axis=1)
    if not keep.any():
        raise ValueError("int8 quality: every held-out prompt is empty (its padding mask is all 0).")
    return ids[keep], mask[keep], start, where.format(int(keep.sum()))


def _judge_generation(export_dir, metadata, sample, rng, decoder_start_id):
    from kzoo.export.onnx_generate import OnnxGenerator

    ids, mask, start, where = _prompts(metadata, sample, rng, decoder_start_id)
    sizes = metadata["decoding"]
    limit, new_tokens = sizes["max_sequence_length"], NEW_TOKENS
    if metadata["family"] == "gpt" and sizes["position_embedding"] == "learned":
        ids, mask = ids[:, -min(ids.shape[1], limit - 1):], mask[:, -min(ids.shape[1], limit - 1):]
        new_tokens = min(new_tokens, limit - ids.shape[1])
    elif metadata["family"] == "seq2seq" and sizes["position_embedding"] != "relative":
        ids, mask, new_tokens = ids[:, :limit], mask[:, :limit], min(new_tokens, limit - 1)
    options = dict(padding_mask=mask, max_new_tokens=new_tokens, pad_id=0)
    if metadata["family"] == "seq2seq":
        options["decoder_start_id"] = start
    fp32 = OnnxGenerator(export_dir).generate(ids, **options)
    int8 = OnnxGenerator(export_dir, int8=True).generate(ids, **options)
    scored = Scores("greedy token agreement with fp32", 100.0, _percent(fp32 == int8), int(fp32.size),
                    f"generated tokens ({len(ids)} prompts x {new_tokens})", len(ids))
    return scored, where


# === The gate ===


def _check_max_drop(max_drop):
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop):
        raise ValueError(f"int8 quality: max_drop must be a finite number of points, got {max_drop!r}.")


def int8_quality(export_dir, sample=None, max_drop=DEFAULT_MAX_DROP, sample_name=None, decoder_start_id=None,
                 seed=0, record=True):
    """Scores the int8 and fp32 graphs of an export on the same examples with the model's task metric.

    Args:
        export_dir: an `export_onnx` directory after `quantize_onnx` (every graph has its int8 file).
        sample: a `kzoo.recipes.heldout.HeldoutSample` (inputs, targets, sample weights) or None: without one, or
            without its targets, label tasks are scored by agreement with the fp32 predictions (on random valid
            inputs when there is no sample) and generation starts from random prompts.
        max_drop: float, the largest allowed `fp32 - int8` in points of the metric in percent (default 1).
        sample_name: how the report names the sample (e.g. its path).
        decoder_start_id: a seq2seq model's first decoder token (default: the sample's, else 0).
        seed: int, for the random inputs or prompts.
        record: bool, write the report into `export.json` as `int8_quality`.

    Returns:
        dict: `model_class`, `judged` (False for a bare backbone), `metric`, `data` (what was scored), `basis`
        (what the int8 side is compared with: "the gold targets", "the fp32 predictions" or
        "the fp32 greedy output"), `fp32`, `int8`, `drop` (points), `max_drop`, `count` and `unit` (what was
        counted: examples, tokens, masked tokens, generated tokens), `examples` (rows or prompts used), `passed`,
        and `reason` (one line) when it did not pass.

    Raises:
        ValueError: no int8 graphs in `export_dir`, a bad `max_drop`, or a sample that does not fit the model.
    """
    _check_max_drop(max_drop)
    export_dir = os.fspath(export_dir)
    metadata = load_metadata(export_dir)
    unquantized = sorted(name for name, entry in metadata["graphs"].items() if not entry.get("int8_file"))
    if unquantized:
        raise ValueError(f"int8 quality: the graphs {unquantized} of {export_dir!r} have no int8 version; run "
                         "kzoo.export.onnx.quantize_onnx (kzoo export --int8) first.")
    model_class, config = metadata["model_class"], metadata["config"]
    rng = np.random.default_rng(seed)
    named = sample_name or "the held-out sample"
    report = {"model_class": model_class, "max_drop": float(max_drop)}
    if model_class in ("GPTCausalLM", "Seq2SeqLM") and "decoding" in metadata:
        scored, where = _judge_generation(export_dir, metadata, sample, rng, decoder_start_id)
        report.update(basis="the fp32 greedy output",
                      data=f"{where} ({named})" if sample is not None else f"{where} (no held-out sample)")
    elif model_class in ("BertClassifier", "BertTokenClassifier", "BertSpanQA", "BertPretrainer", "GPTCausalLM",
                         "Seq2SeqLM"):
        entry = metadata["graphs"]["model"]
        if sample is None:
            inputs = _random_inputs(entry, config, rng)
            data = f"{RANDOM_ROWS} random valid inputs of up to {RANDOM_LENGTH} tokens (no held-out sample)"
        else:
            inputs = {name: value[:MAX_EXAMPLES] for name, value in
                      _graph_inputs(entry, sample.inputs, config, model_class).items()}
            data = f"{len(next(iter(inputs.values())))} held-out examples ({named})"
        fp32, int8 = (_run(session, inputs) for session in _sessions(export_dir, entry))
        cut = None if sample is None else _cut(sample, MAX_EXAMPLES)
        try:
            scored = task_scores(model_class, fp32, int8, inputs, cut, metadata.get("labels"))
        except (KeyError, IndexError, TypeError) as error:  # targets of another task's structure or shape
            raise ValueError(f"int8 quality: the targets of {named} do not fit a {model_class} ({type(error).__name__}"
                             f": {error}); pass the sample saved with this model's run.") from error
        gold = cut is not None and cut.targets is not None and model_class not in ("GPTCausalLM", "Seq2SeqLM")
        report.update(basis="the gold targets" if gold else "the fp32 predictions", data=data)
        scored = dataclasses.replace(scored, examples=len(next(iter(inputs.values()))))
    else:
        report.update(judged=False, passed=True, data="none",
                      reason=f"a {model_class} has no task metric")
        return _record(export_dir, metadata, report, record)
    drop = scored.fp32 - scored.int8
    report.update(judged=True, metric=scored.metric, fp32=scored.fp32, int8=scored.int8, drop=drop,
                  count=scored.count, unit=scored.unit, examples=scored.examples, passed=bool(drop <= max_drop))
    if not report["passed"]:
        report["reason"] = (f"the int8 graphs lose {drop:.2f} points of {scored.metric} ({scored.fp32:.2f}% fp32 -> "
                            f"{scored.int8:.2f}% int8 over {scored.count} {scored.unit.split(' (')[0]}), more than "
                            f"the allowed {max_drop:g}; try --int8-per-channel, or export without --int8")
    return _record(export_dir, metadata, report, record)


def _cut(sample, limit):
    """The first `limit` examples of a `HeldoutSample`-like sample (targets and weights too)."""
    def head(value):
        if value is None:
            return None
        if isinstance(value, dict):
            return {name: np.asarray(item)[:limit] for name, item in value.items()}
        return np.asarray(value)[:limit]

    return type(sample)(head(sample.inputs), head(sample.targets), head(sample.sample_weights))


def _record(export_dir, metadata, report, record):
    if record:
        metadata["int8_quality"] = report
        with open(os.path.join(export_dir, METADATA_FILE), "w") as handle:
            json.dump(metadata, handle, indent=2)
    return report


def format_quality(report):
    """The report as printable lines."""
    if not report["judged"]:
        return [f"int8 quality gate: not judged ({report['reason']}); the int8 graphs were written unchecked"]
    verdict = "ok" if report["passed"] else "FAIL"
    counted = "" if report["unit"] == "examples" else f"; {report['count']:,} {report['unit']}"
    return [
        f"int8 quality gate ({report['metric']}; ONNX Runtime, int8 vs fp32 graphs):",
        f"  data: {report['data']}, scored against {report['basis']}{counted}",
        f"  fp32 {report['fp32']:.2f}%  int8 {report['int8']:.2f}%  drop {report['drop']:.2f} points "
        f"(allowed {report['max_drop']:g})  {verdict}",
    ]
