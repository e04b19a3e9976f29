"""`generate`: the one entry point, from prompts to new tokens (or text)."""

import random

import numpy as np

from kzoo.generate import compile as compile_cache
from kzoo.generate import inputs as prompt_io
from kzoo.generate.adapters import adapter_for
from kzoo.generate.loop import build_decode
from kzoo.generate.options import make_options


def _default(value, tokenizer, kind, fallback):
    if value is not None:
        return value
    if tokenizer is not None:
        special = getattr(tokenizer, "special_token_ids", {}) or {}
        if kind == "pad":
            return getattr(tokenizer, "pad_id", special.get("pad", fallback))
        if kind in special:
            return special[kind]
    return fallback


def generate(
    model,
    inputs,
    *,
    padding_mask=None,
    tokenizer=None,
    strategy="greedy",
    max_new_tokens=32,
    temperature=1.0,
    top_k=None,
    top_p=None,
    num_beams=1,
    length_penalty=1.0,
    early_stopping=False,
    repetition_penalty=1.0,
    stop_token_ids=None,
    min_length=0,
    seed=None,
    pad_id=None,
    decoder_start_id=None,
    use_cache=True,
    jit_compile=True,
):
    """Generates tokens with a `GPTCausalLM` or `Seq2SeqLM`, in one compiled loop.

    Args:
        model: `kzoo.models.GPTCausalLM` (continues each prompt) or `Seq2SeqLM`
            (encodes each prompt, decodes from `decoder_start_id`).
        inputs: prompts: text (str or list of str; needs `tokenizer`), ids as a 2-D
            int array `(b, s)` (with `padding_mask`, padded on either side), a dict
            like the model's inputs (`token_ids`/`padding_mask`, or
            `encoder_token_ids`/`encoder_padding_mask`), ragged rows (a list of id
            lists or a `tf.RaggedTensor`), or one 1-D list/array of ids.
        padding_mask: int/bool `(b, s)`, 1 on real tokens, for array `inputs`.
        tokenizer: a `kzoo.text` tokenizer: text in, text out; it also supplies
            defaults for `pad_id` (its pad id) and `stop_token_ids` (its eos id).
        strategy: "greedy", "sample", "top_k", "top_p" or "beam".
        max_new_tokens: int >= 1, new tokens per prompt at most.
        temperature: float > 0, sampling temperature (ignored by greedy and beam).
        top_k: int >= 1; "top_k" samples among the k likeliest (default 50);
            with "top_p" it cuts the candidates first.
        top_p: float in (0, 1]; "top_p" samples from the smallest set of likeliest
            tokens whose total probability reaches top_p (default 0.9).
        num_beams: int >= 1, beams per prompt for "beam".
        length_penalty: float; beam hypotheses score `sum log p / length ** length_penalty`.
        early_stopping: True, False or "never": when beam search stops (as in
            `transformers`, see `kzoo.generate.beam`).
        repetition_penalty: float > 0; > 1 discourages tokens already in the prompt
            or output (1.0 = off).
        stop_token_ids: int or list of ints; a row ends after one of them.
        min_length: int >= 0, new tokens before a stop token is allowed.
        seed: int for reproducible sampling (same seed, same backend -> same
            tokens); None draws a fresh seed.
        pad_id: int, fills rows after they stop and pads prompts (default: the
            tokenizer's pad id, else 0).
        decoder_start_id: int, first decoder token of a `Seq2SeqLM` (default
            `pad_id`, the T5 convention; BART uses its eos id, 2).
        use_cache: bool, KV-cached decoding; False reruns the whole prefix each
            step (a slow reference).
        jit_compile: bool, compile the loop with XLA under TensorFlow (JAX always
            uses `jax.jit`).

    Returns:
        Ids: int32 NumPy array `(b, n)` of NEW tokens only (the prompt is not
        repeated), `n` the longest output, rows padded with `pad_id` after their stop
        token (which is kept); `(n,)` for a single 1-D prompt. Text: list of str (or
        one str for one str prompt) holding the new text, cut before the stop token.

    Raises:
        ValueError: bad argument values (named in the message, with the fix), empty
            prompts, ids outside the vocabulary, or a prompt that does not fit the
            model's learned positions together with `max_new_tokens`.
    """
    adapter = adapter_for(model)
    vocabulary = adapter.vocabulary_size
    pad_id = _default(pad_id, tokenizer, "pad", 0)
    if stop_token_ids is None and tokenizer is not None:
        eos = _default(None, tokenizer, "eos", None)
        stop_token_ids = () if eos is None else (eos,)
    if adapter.family == "seq2seq" and decoder_start_id is None:
        decoder_start_id = pad_id
    options = make_options(
        vocabulary,
        strategy=strategy,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        repetition_penalty=repetition_penalty,
        stop_token_ids=stop_token_ids,
        min_length=min_length,
        pad_id=pad_id,
        decoder_start_id=decoder_start_id,
        use_cache=bool(use_cache),
        jit_compile=bool(jit_compile),
    )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"generate: seed must be an int or None, got {seed!r}.")
    prompts = prompt_io.prepare(inputs, padding_mask, tokenizer, adapter.family, vocabulary, options.pad_id)
    adapter.check_lengths(prompts, options)

    arrays = {"token_ids": prompts.token_ids, "padding_mask": prompts.padding_mask.astype(np.int32)}
    key = (adapter.family, prompts.token_ids.shape, options)
    run = compile_cache.compiled(model, key, lambda: (build_decode(adapter, options), options.jit_compile))
    seed_value = random.getrandbits(31) if seed is None else int(seed) & 0x7FFFFFFF
    outputs = compile_cache.to_numpy(run(arrays, np.array([seed_value, 0], np.int32)))
    return prompt_io.finish(outputs["tokens"], outputs["lengths"], prompts, tokenizer, options)
