"""The `generate` signatures: prompt strings in, generated strings out, the decoding loop inside the graph.

The loop is `kzoo.generate`'s own (prefill, then a `tf.while_loop` of one-token steps over the decoder blocks' KV
caches), traced once with a dynamic batch and prompt length. `max_new_tokens` fixed at export sizes the caches;
a request may ask for fewer. Temperature and top-p are tensors fed per request: temperature 0 decodes greedily
(exactly `model.generate(strategy="greedy")`), temperature > 0 samples from the top-p nucleus with the request's
seed (reproducible for one seed on one TensorFlow build).

Prompts: GPT prompts are packed by `kzoo.text.packing.pack_prompt`, as `kzoo.generate` packs them (the tokenizer's
`start_ids`, e.g. BOS, first; the LAST `budget` tokens kept; left-padded); seq2seq sources are packed like
`tokenizer.encode` (the end is cut, eos added). Output text is the new tokens cut before the stop token and detokenized.
"""

import warnings

import tensorflow as tf
from keras import ops

from kzoo.export import text_ops
from kzoo.export.errors import ExportError, ExportWarning
from kzoo.export.serving import Signature
from kzoo.generate import processors
from kzoo.generate.adapters import adapter_for
from kzoo.generate.loop import build_decode
from kzoo.generate.options import make_options
from kzoo.generate.sampling import step_seed, top_p_token
from kzoo.models.backbone import position_limit
from kzoo.text import packing


class RequestSelector:
    """Greedy at temperature 0, else top-p sampling; temperature and top_p are set per trace as tensors."""

    temperature = None
    top_p = None

    def __call__(self, scores, base_seed, step):
        scores = ops.cast(scores, "float32")

        def greedy():
            return ops.cast(ops.argmax(scores, axis=-1), "int32")

        def sample():
            probabilities = ops.softmax(scores / ops.maximum(self.temperature, 1e-6), axis=-1)
            return top_p_token(probabilities, self.top_p, step_seed(base_seed, step))

        return ops.cond(self.temperature > 0, sample, greedy)


def prompt_budget(model, settings):
    """GPT prompt tokens kept (`kzoo.text.packing.prompt_budget`); says when the model's positions cut it."""
    limit = position_limit(model)
    budget = packing.prompt_budget(settings.sequence_length, limit, settings.max_new_tokens)
    if budget < 1:
        raise ExportError(
            f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in the model's {limit} positions; "
            f"export with a smaller --max-new-tokens."
        )
    if budget < settings.sequence_length:
        warnings.warn(f"sequence_length={settings.sequence_length} prompt tokens do not fit the model's {limit} "
                      f"positions with max_new_tokens={settings.max_new_tokens}; prompts keep their last {budget} tokens.",
                      ExportWarning, stacklevel=3)
    return budget


def generation_signatures(model, tokenizer, settings):
    """`generate` and `generate_with_options` for a `GPTCausalLM` or `Seq2SeqLM`."""
    adapter = adapter_for(model)
    cap = settings.max_new_tokens
    seq2seq = adapter.family == "seq2seq"
    if seq2seq:
        limit = position_limit(model)
        if limit is not None and (settings.sequence_length > limit or cap + 1 > limit):
            raise ExportError(
                f"The model has {limit} positions: export with --sequence-length <= {limit} and "
                f"--max-new-tokens <= {limit - 1}."
            )
        budget = settings.sequence_length
    else:
        budget = prompt_budget(model, settings)
    options = make_options(
        adapter.vocabulary_size,
        strategy="greedy",
        max_new_tokens=cap,
        stop_token_ids=settings.stop_token_ids,
        pad_id=settings.pad_id,
        decoder_start_id=(settings.decoder_start_id if settings.decoder_start_id is not None else settings.pad_id)
        if seq2seq
        else None,
        jit_compile=False,
    )
    selector = RequestSelector()
    decode = build_decode(adapter, options, selector=selector)

    def pack(prompts):
        if seq2seq:
            packed = tokenizer.encode(prompts, sequence_length=budget)
        else:
            packed = packing.pack_prompt(tokenizer.tokenize(prompts), start_ids=tokenizer.start_ids,
                                         sequence_length=budget, pad_id=settings.pad_id)
        mask = tf.cast(packed["padding_mask"], tf.int32)
        return packed["token_ids"], mask, tf.reduce_sum(mask, axis=1)

    def run(prompts, max_new_tokens, temperature, top_p, seed):
        prompts = text_ops.check_batch(prompts, "prompts")
        token_ids, padding_mask, lengths = pack(prompts)
        tokenless = tf.equal(lengths, 0)
        utf8 = tf.equal(prompts, tf.strings.unicode_transcode(prompts, "UTF-8", "UTF-8", errors="replace"))
        empty = tf.equal(tf.strings.length(tf.strings.strip(prompts)), 0)
        checks = [  # one message per cause, so each tokenless prompt fails exactly one of them
            tf.debugging.Assert(~tf.reduce_any(tokenless & ~utf8), [tf.constant(
                "a prompt is not valid UTF-8 and leaves no tokens after tokenization: send UTF-8 text.")]),
            tf.debugging.Assert(~tf.reduce_any(tokenless & utf8 & empty), [tf.constant(
                "every prompt needs at least one token after tokenization; an empty prompt has none.")]),
            tf.debugging.Assert(~tf.reduce_any(tokenless & utf8 & ~empty), [tf.constant(
                "a prompt leaves no tokens after tokenization (the tokenizer drops all of its characters): send "
                "text with words.")]),
            tf.debugging.Assert((max_new_tokens >= 1) & (max_new_tokens <= cap), [tf.constant(
                f"max_new_tokens must be in [1, {cap}] (the export's maximum); re-export for longer outputs.")]),
            tf.debugging.Assert(tf.math.is_finite(temperature) & (temperature >= 0), [tf.constant(
                "temperature must be >= 0 (0 = greedy).")]),
            tf.debugging.Assert((top_p > 0) & (top_p <= 1), [tf.constant("top_p must be in (0, 1].")]),
        ]
        with tf.control_dependencies(checks):
            token_ids = tf.identity(token_ids)
        selector.temperature, selector.top_p = temperature, top_p
        arrays = {"token_ids": token_ids, "padding_mask": padding_mask, "max_new_tokens": max_new_tokens}
        outputs = decode(arrays, tf.stack([seed, 0]))
        tokens, counts = outputs["tokens"], outputs["lengths"]
        generated = tf.RaggedTensor.from_tensor(tokens, lengths=counts)
        stops = processors.is_stop(generated.flat_values, options.stop_token_ids)
        text = tokenizer.detokenize(tf.ragged.boolean_mask(generated, generated.with_flat_values(~stops)))
        width = tf.reduce_max(counts)
        return {"text": text, "token_ids": tokens[:, :width], "num_tokens": counts}

    @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="prompts")])
    def generate(prompts):
        return run(prompts, tf.constant(cap), tf.constant(float(settings.temperature)),
                   tf.constant(float(settings.top_p)), tf.constant(0))

    @tf.function(input_signature=[
        tf.TensorSpec(None, tf.string, name="prompts"),
        tf.TensorSpec(None, tf.int32, name="max_new_tokens"),
        tf.TensorSpec(None, tf.float32, name="temperature"),
        tf.TensorSpec(None, tf.float32, name="top_p"),
        tf.TensorSpec(None, tf.int32, name="seed"),
    ])
    def generate_with_options(prompts, max_new_tokens, temperature, top_p, seed):
        scalars = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        scalars = {name: text_ops.with_rank(value, 0, name) for name, value in scalars.items()}
        return run(prompts, **scalars)

    prompt_rule = (
        f"sources packed like tokenizer.encode in {budget} tokens (the end is cut, eos added)"
        if seq2seq
        else f"prompts keep their last {budget} tokens (after the tokenizer's prefix), left-padded"
    )
    out = (
        "text (b,) string (new text, cut before the stop token), token_ids (b, n) int32 (new tokens, pad after a "
        "row's stop token, which is kept), num_tokens (b,) int32"
    )
    stop = list(options.stop_token_ids)
    return [
        Signature(
            "generate", generate,
            f"Text in: prompts (b,) string; {prompt_rule}. Decodes up to {cap} new tokens with temperature "
            f"{settings.temperature} (0 = greedy), top_p {settings.top_p}, stop ids {stop}. Out: {out}.",
            {"prompts": ["Once upon a time"]},
        ),
        Signature(
            "generate_with_options", generate_with_options,
            f"Text in: prompts (b,) string; {prompt_rule}. Options (scalars): max_new_tokens int32 in [1, {cap}], "
            "temperature float32 >= 0 (0 = greedy), top_p float32 in (0, 1], seed int32 (sampling). Stop ids "
            f"{stop}. Out: {out}.",
            {"prompts": ["Once upon a time", "Hello"], "max_new_tokens": min(4, cap), "temperature": 0.0,
             "top_p": 1.0, "seed": 0},
        ),
    ]
