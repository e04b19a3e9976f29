"""The decoding loop: prefill, then one token per iteration of a `keras.ops.while_loop`.

`build_decode(adapter, options)` returns a pure function of tensors,
`decode(arrays, seed) -> {"tokens": int32 (b, N), "lengths": int32 (b,)}`, that
`kzoo.generate.compile` traces once per shape (a `tf.while_loop` under TensorFlow,
`lax.while_loop` under JAX): no Python runs per token.

Greedy and sampling rows stop after emitting a stop token (later slots hold
`pad_id`); the loop ends when every row has stopped or after `max_new_tokens`.
Beam search follows `kzoo.generate.beam`.
"""

from keras import ops

from kzoo.generate import beam, processors
from kzoo.generate.sampling import TokenSelector
from kzoo.layers.cache_updates import write_at


def build_decode(adapter, options, selector=None):
    """The traced decoding function for `adapter` (a `kzoo.generate.adapters.DecodingAdapter`).

    Built outside any trace: the keras-hub sampler it may create holds a (never used)
    seed variable, and variables cannot be created inside a compiled function.

    Args:
        adapter: the model's adapter.
        options: `GenerationOptions`.
        selector: for non-beam strategies, a callable `(scores (B, V) float32, base_seed, step) -> (B,) int32`
            that replaces the one `options` describes (the SavedModel export passes one whose temperature and
            top-p are tensors fed at serving time).

    `arrays` may hold "max_new_tokens", an int32 scalar tensor that ends the loop earlier than
    `options.max_new_tokens` (which still sizes the buffers); beam search ignores it.
    """
    if options.strategy == "beam":
        return _beam_decode(adapter, options)
    return _sampling_decode(adapter, options, selector or TokenSelector(options))


def _sampling_decode(adapter, options, selector):
    length, pad = options.max_new_tokens, options.pad_id
    vocabulary = adapter.vocabulary_size
    penalise = options.repetition_penalty != 1.0

    def decode(arrays, seed):
        stop_mask = processors.stop_token_mask(options.stop_token_ids, vocabulary)
        logits, state, context, first_index = adapter.start(arrays, options, 1)
        batch = ops.shape(logits)[0]
        loop = {
            "t": ops.zeros((), "int32"),
            "logits": logits,
            "state": state,
            "tokens": ops.full((batch, length), pad, "int32"),
            "finished": ops.zeros((batch,), "bool"),
            "lengths": ops.zeros((batch,), "int32"),
        }
        if penalise:
            loop["seen"] = adapter.seen(arrays, 1, options)

        limit = length
        if "max_new_tokens" in arrays:
            limit = ops.minimum(ops.cast(arrays["max_new_tokens"], "int32"), length)

        def cond(loop):
            return ops.logical_and(loop["t"] < limit, ops.logical_not(ops.all(loop["finished"])))

        def body(loop):
            t = loop["t"]
            scores = processors.process(loop["logits"], t, options, stop_mask, loop.get("seen"))
            token = selector(scores, seed, t)
            token = ops.where(loop["finished"], pad, token)
            tokens = write_at(loop["tokens"], t, token[:, None])
            stopped = ops.logical_and(processors.is_stop(token, options.stop_token_ids), ~loop["finished"])
            lengths = ops.where(stopped, t + 1, loop["lengths"])
            logits, state = adapter.step(token, first_index + t, loop["state"], context, options)
            new = {
                "t": t + 1,
                "logits": logits,
                "state": state,
                "tokens": tokens,
                "finished": ops.logical_or(loop["finished"], stopped),
                "lengths": lengths,
            }
            if penalise:
                new["seen"] = processors.add_seen(loop["seen"], token)
            return (new,)

        (loop,) = ops.while_loop(cond, body, (loop,))
        lengths = ops.where(loop["finished"], loop["lengths"], loop["t"])
        return {"tokens": loop["tokens"], "lengths": lengths}

    return decode


def _beam_decode(adapter, options):
    beams = options.num_beams
    vocabulary = adapter.vocabulary_size
    penalise = options.repetition_penalty != 1.0

    def decode(arrays, seed):
        del seed  # beam search is deterministic
        stop_mask = processors.stop_token_mask(options.stop_token_ids, vocabulary)
        logits, state, context, first_index = adapter.start(arrays, options, beams)
        batch = ops.shape(logits)[0] // beams
        loop = {
            "t": ops.zeros((), "int32"),
            "logits": logits,
            "state": state,
            "beam": beam.initial_state(batch, options, vocabulary),
        }
        if penalise:
            loop["seen"] = adapter.seen(arrays, beams, options)

        def cond(loop):
            return ops.logical_and(loop["t"] < options.max_new_tokens, beam.not_done(loop["beam"], options))

        def body(loop):
            t = loop["t"]
            beam_state, source, next_tokens = beam.step(
                loop["beam"], loop["logits"], t, loop.get("seen"), options, stop_mask
            )
            state = adapter.reorder(loop["state"], source)
            logits, state = adapter.step(next_tokens, first_index + t, state, context, options)
            new = {"t": t + 1, "logits": logits, "state": state, "beam": beam_state}
            if penalise:
                new["seen"] = processors.add_seen(ops.take(loop["seen"], source, axis=0), next_tokens)
            return (new,)

        (loop,) = ops.while_loop(cond, body, (loop,))
        tokens, lengths = beam.best(loop["beam"])
        return {"tokens": tokens, "lengths": lengths}

    return decode
