"""Evaluators a recipe hands the Trainer: `fn(model, results) -> dict` of task metrics or sample texts, run after
each evaluation and logged to TensorBoard and the final report."""

import math

from kzoo.visualize.tasks import escape_markdown, generation_settings, masked_predictions, side_by_side_table


def perplexity(model, results):
    """Evaluator: perplexity from the held-out mean cross-entropy."""
    if "loss" not in results:
        return {}
    return {"perplexity": math.exp(min(results["loss"], 50.0))}


def sample_generations(prompts, tokenizer, max_new_tokens=24, name="samples", **options):
    """Evaluator: continuations of fixed `prompts`, logged as one markdown text ending in the decoding settings.

    `options` are further `kzoo.generate.generate` keyword arguments (e.g. `strategy="top_k", seed=0`);
    the default is greedy. The settings line shows exactly what was passed to `generate`, and that generation
    stops at the tokenizer's end token.
    """
    settings = {"strategy": "greedy", "max_new_tokens": max_new_tokens, **options}

    def evaluate(model, results):
        outputs = model.generate(list(prompts), tokenizer=tokenizer, **settings)
        lines = [f"* **{escape_markdown(prompt)}** {escape_markdown(output)}"
                 for prompt, output in zip(prompts, outputs, strict=True)]
        shown = generation_settings({**settings, "stop at": "end token"})
        return {name: "\n".join(lines) + "\n\n" + shown}

    return evaluate


def greedy_seq2seq_evaluator(pairs, tokenizer, encoder_sequence_length, decoder_sequence_length, score, shown=5):
    """Evaluator: greedy outputs for the sources of `pairs` (one compiled batch), scored by `score`.

    `score(hypotheses, references) -> dict of floats`; the first `shown` sources, their
    references and outputs are returned side by side as the `samples` text (a markdown
    table), followed by the decoding settings.
    """
    import numpy as np

    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    packed = tokenizer.encode(sources, sequence_length=encoder_sequence_length)  # truncated like the training data
    prompts = {"encoder_token_ids": np.asarray(packed["token_ids"]),
               "encoder_padding_mask": np.asarray(packed["padding_mask"])}
    eos = tokenizer.special_token_ids["eos"]
    settings = {"strategy": "greedy", "max_new_tokens": decoder_sequence_length}

    def evaluate(model, results):
        ids = model.generate(prompts, **settings, stop_token_ids=[eos], pad_id=tokenizer.pad_id)
        rows = [[int(i) for i in row] for row in ids]
        rows = [row[:row.index(eos)] if eos in row else row for row in rows]  # cut at the end token
        hypotheses = [text.decode("utf-8") for text in tokenizer.detokenize(rows).numpy()]
        table = side_by_side_table({"source": sources[:shown], "reference": references[:shown],
                                    "output": hypotheses[:shown]})
        shown_settings = generation_settings({**settings, "stop at": "end token",
                                              "source tokens": encoder_sequence_length})
        return {**score(hypotheses, references), "samples": table + "\n\n" + shown_settings}

    return evaluate


def masked_lm_examples(batch, tokenizer, count=3, top=3, name="masked_predictions"):
    """Evaluator: the model's `top` guesses at the masked positions of the first `count` examples of `batch`.

    `batch` is one `(features, targets, sample_weights)` batch of `kzoo.data.bert_pretraining_dataset` (fixed, so
    the same examples are shown at every evaluation); masked slots with weight 0 (padding) are left out. Returns
    the markdown of `kzoo.visualize.tasks.masked_predictions` as the `name` text.
    """
    import numpy as np

    features, targets, weights = batch
    features = {key: np.asarray(value)[:count] for key, value in features.items()}
    gold_ids, real = np.asarray(targets["mlm_logits"])[:count], np.asarray(weights["mlm_logits"])[:count] > 0

    def evaluate(model, results):
        logits = np.asarray(model.predict(features, verbose=0)["mlm_logits"], np.float64)  # (b, p, vocabulary)
        probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        examples = []
        for row in range(len(gold_ids)):
            slots = np.flatnonzero(real[row])
            ids = features["token_ids"][row][features["padding_mask"][row] > 0]
            best = np.argsort(-probabilities[row, slots], axis=-1)[:, :top]  # (slots, top)
            examples.append({
                "tokens": [tokenizer.id_to_token(int(i)) for i in ids],
                "positions": features["mask_positions"][row][slots].tolist(),
                "gold": [tokenizer.id_to_token(int(i)) for i in gold_ids[row][slots]],
                "predictions": [[(tokenizer.id_to_token(int(i)), float(probabilities[row, slot, i])) for i in ids_]
                                for slot, ids_ in zip(slots, best, strict=True)]})
        return {name: masked_predictions(examples, count)}

    return evaluate
