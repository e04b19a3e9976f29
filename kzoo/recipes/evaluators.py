"""Evaluators a recipe hands the Trainer: `fn(model, results) -> dict` of task metrics or sample texts, run after
each evaluation and logged to TensorBoard and the final report."""

import math


def perplexity(model, results):
    """Evaluator: perplexity from the held-out mean cross-entropy."""
    if "loss" not in results:
        return {}
    return {"perplexity": math.exp(min(results["loss"], 50.0))}


def sample_generations(prompts, tokenizer, max_new_tokens=24, name="samples"):
    """Evaluator: greedy continuations of fixed `prompts`, logged as one markdown text."""

    def evaluate(model, results):
        outputs = model.generate(list(prompts), tokenizer=tokenizer, max_new_tokens=max_new_tokens)
        lines = [f"* **{prompt}** {output}" for prompt, output in zip(prompts, outputs, strict=True)]
        return {name: "\n".join(lines)}

    return evaluate


def greedy_seq2seq_evaluator(pairs, tokenizer, encoder_sequence_length, decoder_sequence_length, score):
    """Evaluator: greedy outputs for the sources of `pairs` (one compiled batch), scored by `score`.

    `score(hypotheses, references) -> dict of floats`; a few (source, output, reference)
    triples are returned as the `samples` text.
    """
    import numpy as np

    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    packed = tokenizer.encode(sources, sequence_length=encoder_sequence_length)  # truncated like the training data
    prompts = {"encoder_token_ids": np.asarray(packed["token_ids"]),
               "encoder_padding_mask": np.asarray(packed["padding_mask"])}
    eos = tokenizer.special_token_ids["eos"]

    def evaluate(model, results):
        ids = model.generate(prompts, max_new_tokens=decoder_sequence_length, stop_token_ids=[eos],
                             pad_id=tokenizer.pad_id)
        rows = [[int(i) for i in row] for row in ids]
        rows = [row[:row.index(eos)] if eos in row else row for row in rows]  # cut at the end token
        hypotheses = [text.decode("utf-8") for text in tokenizer.detokenize(rows).numpy()]
        samples = [f"{s}  \n→ {h}  \n(reference: {r})" for s, h, r in zip(sources, hypotheses, references, strict=True)]
        return {**score(hypotheses, references), "samples": "\n\n".join(samples[:5])}

    return evaluate
