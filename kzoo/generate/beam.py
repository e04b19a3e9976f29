"""Beam search, with the semantics of `transformers`' vectorised beam search (v4.50+).

Per step, for `b` prompts with `n` beams each and vocabulary `V`:
  1. log-softmax the logits, apply the processors (repetition penalty, minimum
     length) to the log-probabilities, add each beam's running score;
  2. keep the `K = max(2, 1 + number of stop ids) * n` best of the `n * V`
     continuations (enough that `n` of them are still running even if the best all
     stop);
  3. a continuation that emits a stop token or reaches `max_new_tokens` is a
     finished hypothesis, scored `sum log p / new_length ** length_penalty` (its
     new tokens, the stop token included); only the top `n` of the `K` may enter
     the `n` kept finished hypotheses, and none once the batch item is done;
  4. the best `n` continuations that did not finish become the running beams, and
     the KV cache rows are reordered to follow them.

A batch item is done when no running beam can beat its worst finished hypothesis:
with `early_stopping=True` as soon as it has `n` finished hypotheses; with `False`
when the best running score divided by the current length (a heuristic) cannot
beat the worst finished one; with `"never"` when even the best length-penalised
bound (at `max_new_tokens` for a positive `length_penalty`) cannot. The loop ends
when every item is done. The result is each item's best finished hypothesis.

Shapes: `b` batch, `n` beams, `K` kept candidates, `N` max_new_tokens, `V` vocab.
"""

from keras import ops

from kzoo.generate import processors

BIG = 1e9


def _gather(tensor, indices):
    """`tensor` `(b, k, ...)` gathered along axis 1 with int `(b, m)` -> `(b, m, ...)`."""
    shape = ops.shape(indices)
    extra = tuple(tensor.shape[2:])
    indices = ops.reshape(indices, tuple(shape) + (1,) * len(extra))
    indices = ops.broadcast_to(indices, tuple(shape) + extra)
    return ops.take_along_axis(tensor, indices, axis=1)


def initial_state(batch, options, vocabulary_size):
    """The beam bookkeeping before the first step (see `step` for the fields)."""
    beams, length, pad = options.num_beams, options.max_new_tokens, options.pad_id
    first = ops.cast(ops.arange(beams) > 0, "float32") * -BIG  # only beam 0 is live at the start
    return {
        "running_tokens": ops.full((batch, beams, length), pad, "int32"),
        "running_scores": ops.broadcast_to(first[None, :], (batch, beams)),
        "tokens": ops.full((batch, beams, length), pad, "int32"),
        "scores": ops.full((batch, beams), -BIG, "float32"),
        "lengths": ops.zeros((batch, beams), "int32"),
        "finished": ops.zeros((batch, beams), "bool"),
        "improvable": ops.ones((batch, 1), "bool"),
        "all_hit": ops.zeros((), "bool"),
    }


def not_done(beam_state, options):
    """bool scalar: some batch item can still improve (the loop condition)."""
    going = ops.any(beam_state["improvable"])
    if options.early_stopping is True:
        going = ops.logical_and(going, ops.logical_not(ops.all(beam_state["finished"])))
    return ops.logical_and(going, ops.logical_not(beam_state["all_hit"]))


def step(beam_state, logits, t, seen, options, stop_mask):
    """One beam-search step.

    Args:
        beam_state: dict of
            running_tokens int32 `(b, n, N)`, running_scores float32 `(b, n)`: live beams;
            tokens int32 `(b, n, N)`, scores float32 `(b, n)`, lengths int32 `(b, n)`,
            finished bool `(b, n)`: the kept finished hypotheses (best first);
            improvable bool `(b, 1)`: the item is not done; all_hit bool scalar.
        logits: float32 `(b * n, V)`, next-token logits of the running beams.
        t: int32 scalar, new tokens generated so far.
        seen: bool `(b * n, V)` tokens seen per beam (repetition penalty) or None.
        options: `GenerationOptions`.
        stop_mask: bool `(V,)`.

    Returns:
        `(beam_state, source, next_tokens)`: the new state, int32 `(b * n,)` flat row
        of the parent of each new running beam (to reorder caches), and int32
        `(b * n,)` the token each running beam feeds next.
    """
    beams, length = options.num_beams, options.max_new_tokens
    vocabulary = ops.shape(logits)[-1]
    batch = ops.shape(beam_state["running_scores"])[0]
    keep = max(2, 1 + len(options.stop_token_ids)) * beams

    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    log_probs = processors.process(log_probs, t, options, stop_mask, seen)
    totals = ops.reshape(log_probs, (batch, beams, vocabulary)) + beam_state["running_scores"][:, :, None]
    totals = ops.reshape(totals, (batch, beams * vocabulary))

    # Top-K continuations over all beams.
    top_scores, top_indices = ops.top_k(totals, k=keep, sorted=True)
    top_indices = ops.cast(top_indices, "int32")
    parents = top_indices // vocabulary
    new_tokens = top_indices % vocabulary
    candidates = _gather(beam_state["running_tokens"], parents)  # (b, K, N)
    column = ops.arange(length, dtype="int32") == ops.cast(t, "int32")
    candidates = ops.where(column[None, None, :], new_tokens[:, :, None], candidates)
    hits = ops.logical_or(processors.is_stop(new_tokens, options.stop_token_ids), t + 1 >= length)

    # Running beams for the next step: the best continuations that did not finish.
    running_candidates = top_scores + ops.cast(hits, "float32") * -BIG
    _, chosen = ops.top_k(running_candidates, k=beams, sorted=True)
    running_tokens = _gather(candidates, chosen)
    running_scores = _gather(running_candidates, chosen)
    chosen_parents = _gather(parents, chosen)
    next_tokens = _gather(new_tokens, chosen)

    # Finished hypotheses: the top `n` continuations that hit a stop, length-penalised.
    just_finished = ops.logical_and(hits, (ops.arange(keep) < beams)[None, :])
    new_length = ops.cast(t + 1, "float32")
    finished_scores = top_scores / ops.power(new_length, options.length_penalty)
    if options.early_stopping is True:
        full = ops.all(beam_state["finished"], axis=-1, keepdims=True)
        finished_scores = finished_scores + ops.cast(full, "float32") * -BIG
    finished_scores = finished_scores + ops.cast(ops.logical_not(beam_state["improvable"]), "float32") * -BIG
    finished_scores = finished_scores + ops.cast(ops.logical_not(just_finished), "float32") * -BIG
    merged_scores = ops.concatenate([beam_state["scores"], finished_scores], axis=1)
    _, best = ops.top_k(merged_scores, k=beams, sorted=True)
    merged_lengths = ops.concatenate(
        [beam_state["lengths"], ops.full((batch, keep), 1, "int32") * ops.cast(t + 1, "int32")], axis=1
    )
    tokens = _gather(ops.concatenate([beam_state["tokens"], candidates], axis=1), best)
    scores = _gather(merged_scores, best)
    lengths = _gather(merged_lengths, best)
    finished = _gather(ops.concatenate([beam_state["finished"], just_finished], axis=1), best)

    # Can a running beam still beat the worst finished hypothesis?
    if options.early_stopping == "never" and options.length_penalty > 0.0:
        best_length = ops.cast(length, "float32")
    else:
        best_length = new_length
    best_running = running_scores[:, :1] / ops.power(best_length, options.length_penalty)
    worst_finished = ops.where(finished, ops.min(scores, axis=1, keepdims=True), -BIG)
    improvable = ops.logical_and(
        beam_state["improvable"], ops.any(best_running > worst_finished, axis=-1, keepdims=True)
    )

    source = ops.reshape(chosen_parents + ops.arange(batch, dtype="int32")[:, None] * beams, (-1,))
    new_state = {
        "running_tokens": running_tokens,
        "running_scores": running_scores,
        "tokens": tokens,
        "scores": scores,
        "lengths": lengths,
        "finished": finished,
        "improvable": improvable,
        "all_hit": ops.all(hits),
    }
    return new_state, source, ops.reshape(next_tokens, (-1,))


def best(beam_state):
    """The best finished hypothesis per item: int32 `(b, N)` tokens and `(b,)` lengths."""
    return beam_state["tokens"][:, 0], beam_state["lengths"][:, 0]
