"""How each model family runs inside the decoding loop: prefill, one step, beam reorder.

An adapter turns the packed prompt tensors into next-token logits and a decoding
state, then advances that state by one token. Everything here runs inside the
compiled loop, so it is written with `keras.ops` only.

Causal LMs (`GPTCausalLM`): prompts are LEFT-padded to a common length `P`, so every
row's last prompt token is in column `P - 1`. One prefill pass over `(b, P)` fills
the KV caches (length `P + N`) and gives the first logits; step `t` then feeds the
token generated at buffer position `P + t`. Padded slots are masked out of
attention, and learned position embeddings use per-row positions counted from each
row's first real token, so a padded row decodes exactly as it would alone.

Seq2seq LMs (`Seq2SeqLM`): the encoder runs once over the RIGHT-padded prompts; the
cross-attention keys and values of every decoder block are computed once; the
decoder starts from `decoder_start_id` at position 0 and feeds one token per step.

Without a cache (`use_cache=False`) the state is the token buffer and every step
reruns the full forward pass over it (slow; a reference for tests).

Shapes: B rows (batch, times beams), P prompt length, N max_new_tokens, V vocabulary.
"""

from keras import ops

from kzoo.layers.cache_updates import write_at
from kzoo.models.gpt.tasks import GPTCausalLM
from kzoo.models.seq2seq.tasks import Seq2SeqLM


def _repeat(tree, times):
    if times == 1:
        return tree
    if isinstance(tree, dict):
        return {key: _repeat(value, times) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_repeat(value, times) for value in tree)
    return ops.repeat(tree, times, axis=0)


def _take_rows(tree, rows):
    if isinstance(tree, dict):
        return {key: _take_rows(value, rows) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_take_rows(value, rows) for value in tree)
    return ops.take(tree, rows, axis=0)


def _logits(backbone, hidden):
    """float32 `(B, V)` logits from `(B, d)` hidden states."""
    return ops.cast(backbone.token_logits(hidden), "float32")


class CausalAdapter:
    """Decoding state of a `GPTCausalLM` (see the module docstring).

    Args:
        model: a `GPTCausalLM`.
    """

    family = "causal"

    def __init__(self, model):
        self.model = model
        self.backbone = model.backbone
        self.vocabulary_size = self.backbone.token_embedding.vocabulary_size
        self.learned_positions = self.backbone.position_embedding is not None
        self.max_sequence_length = self.backbone.get_config()["max_sequence_length"]

    def check_lengths(self, prompts, options):
        """Raises ValueError when a prompt plus `max_new_tokens` overflows the learned positions."""
        if not self.learned_positions:
            return
        longest = int(prompts.lengths.max())
        limit = self.max_sequence_length
        if longest + options.max_new_tokens > limit:
            room = limit - options.max_new_tokens
            fix = (
                f"shorten the prompt to at most {room} tokens or lower max_new_tokens to {limit - longest}"
                if room > 0 and limit > longest
                else f"lower max_new_tokens below {limit} and shorten the prompt"
            )
            raise ValueError(
                f"generate: a prompt of {longest} tokens plus max_new_tokens={options.max_new_tokens} exceeds the "
                f"model's context of max_sequence_length={limit} learned positions; {fix}."
            )

    def start(self, arrays, options, beams):
        """Prefill. Returns `(logits (B, V), state, context, first_index)`.

        Args:
            arrays: dict with "token_ids" int32 `(b, P)` left-padded and "padding_mask"
                int32/bool `(b, P)`.
            options: `GenerationOptions`.
            beams: int, rows per prompt (the state and context are repeated).
        """
        token_ids = ops.cast(arrays["token_ids"], "int32")
        prompt_mask = ops.cast(arrays["padding_mask"], "bool")
        batch, prompt_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        total = prompt_length + options.max_new_tokens
        mask = ops.concatenate([prompt_mask, ops.ones((batch, options.max_new_tokens), "bool")], axis=1)
        pad_count = prompt_length - ops.sum(ops.cast(prompt_mask, "int32"), axis=1)  # (b,)
        positions = ops.maximum(ops.arange(total, dtype="int32")[None, :] - pad_count[:, None], 0)  # (b, P + N)
        if options.use_cache:
            cache = self.backbone.empty_cache(batch, total)
            hidden, cache = self.backbone.call_with_cache(
                token_ids, cache, 0, padding_mask=mask, position_ids=positions[:, :prompt_length]
            )
            state = {"cache": cache}
        else:
            buffer = ops.concatenate(
                [token_ids, ops.full((batch, options.max_new_tokens), options.pad_id, "int32")], axis=1
            )
            hidden, _ = self.backbone.call_with_cache(buffer, None, 0, padding_mask=mask, position_ids=positions)
            hidden = hidden[:, :prompt_length]
            state = {"buffer": buffer}
        logits = _logits(self.backbone, hidden[:, -1])
        context = {"mask": mask, "positions": positions}
        return _repeat(logits, beams), _repeat(state, beams), _repeat(context, beams), prompt_length

    def step(self, tokens, index, state, context, options):
        """Feeds `tokens` int32 `(B,)` at buffer position `index`; returns `(logits, state)`."""
        index = ops.cast(index, "int32")
        if options.use_cache:
            positions = ops.take(context["positions"], index, axis=1)[:, None]  # (B, 1)
            hidden, cache = self.backbone.call_with_cache(
                tokens[:, None], state["cache"], index, padding_mask=context["mask"], position_ids=positions
            )
            return _logits(self.backbone, hidden[:, 0]), {"cache": cache}
        buffer = write_at(state["buffer"], index, tokens[:, None])
        hidden, _ = self.backbone.call_with_cache(
            buffer, None, 0, padding_mask=context["mask"], position_ids=context["positions"]
        )
        return _logits(self.backbone, ops.take(hidden, index, axis=1)), {"buffer": buffer}

    def reorder(self, state, rows):
        """Gathers the per-beam state rows `rows` int32 `(B,)` (beam search)."""
        return _take_rows(state, rows)

    def seen(self, arrays, beams, options):
        """bool `(B, V)` ids in the prompts (for the repetition penalty); padding excluded."""
        from kzoo.generate.processors import seen_tokens

        seen = seen_tokens(ops.cast(arrays["token_ids"], "int32"), arrays["padding_mask"], self.vocabulary_size)
        return _repeat(seen, beams)


class Seq2SeqAdapter:
    """Decoding state of a `Seq2SeqLM` (see the module docstring).

    Args:
        model: a `Seq2SeqLM`.
    """

    family = "seq2seq"

    def __init__(self, model):
        self.model = model
        self.backbone = model.backbone
        self.vocabulary_size = self.backbone.token_embedding.vocabulary_size
        config = self.backbone.get_config()
        self.bounded = config["position_embedding"] != "relative"
        self.max_sequence_length = config["max_sequence_length"]

    def check_lengths(self, prompts, options):
        """Raises ValueError when the encoder prompt or the decoder output overflows the positions."""
        if not self.bounded:
            return
        limit = self.max_sequence_length
        longest = int(prompts.lengths.max())
        if longest > limit:
            raise ValueError(
                f"generate: an encoder prompt of {longest} tokens exceeds the model's max_sequence_length={limit}; "
                f"shorten it to at most {limit} tokens."
            )
        if 1 + options.max_new_tokens > limit:
            raise ValueError(
                f"generate: max_new_tokens={options.max_new_tokens} plus the decoder start token exceeds the "
                f"model's max_sequence_length={limit}; pass max_new_tokens <= {limit - 1}."
            )

    def start(self, arrays, options, beams):
        """Encoder pass, then the decoder start token. Returns `(logits, state, context, 1)`.

        Args:
            arrays: dict with "token_ids" int32 `(b, S)` right-padded encoder prompts
                and "padding_mask" `(b, S)`.
        """
        token_ids = ops.cast(arrays["token_ids"], "int32")
        encoder_mask = ops.cast(arrays["padding_mask"], "bool")
        batch = ops.shape(token_ids)[0]
        encoded = self.backbone.encode(token_ids, encoder_mask, training=False)
        total = 1 + options.max_new_tokens
        start = ops.full((batch, 1), options.decoder_start_id, "int32")
        if options.use_cache:
            cross = self.backbone.cross_attention_caches(encoded)
            cache = self.backbone.empty_decoder_cache(batch, total)
            hidden, cache = self.backbone.decode_with_cache(start, cache, cross, 0, encoder_mask)
            state, context = {"cache": cache}, {"cross": cross, "encoder_mask": encoder_mask}
        else:
            buffer = ops.concatenate(
                [start, ops.full((batch, options.max_new_tokens), options.pad_id, "int32")], axis=1
            )
            hidden = self.backbone.decode(buffer, ops.ones((batch, total), "bool"), encoded, encoder_mask)
            state, context = {"buffer": buffer}, {"encoded": encoded, "encoder_mask": encoder_mask}
        logits = _logits(self.backbone, hidden[:, 0])
        return _repeat(logits, beams), _repeat(state, beams), _repeat(context, beams), 1

    def step(self, tokens, index, state, context, options):
        """Feeds decoder `tokens` int32 `(B,)` at position `index`; returns `(logits, state)`."""
        index = ops.cast(index, "int32")
        if options.use_cache:
            hidden, cache = self.backbone.decode_with_cache(
                tokens[:, None], state["cache"], context["cross"], index, context["encoder_mask"]
            )
            return _logits(self.backbone, hidden[:, 0]), {"cache": cache}
        buffer = write_at(state["buffer"], index, tokens[:, None])
        batch, total = ops.shape(buffer)[0], ops.shape(buffer)[1]
        hidden = self.backbone.decode(
            buffer, ops.ones((batch, total), "bool"), context["encoded"], context["encoder_mask"]
        )
        return _logits(self.backbone, ops.take(hidden, index, axis=1)), {"buffer": buffer}

    def reorder(self, state, rows):
        return _take_rows(state, rows)

    def seen(self, arrays, beams, options):
        """bool `(B, V)`: the decoder start token (the decoder sequence `transformers` penalises)."""
        batch = ops.shape(arrays["token_ids"])[0]
        vocabulary = ops.arange(self.vocabulary_size, dtype="int32")
        seen = ops.broadcast_to(vocabulary[None, :] == options.decoder_start_id, (batch, self.vocabulary_size))
        return _repeat(seen, beams)


def adapter_for(model):
    """The adapter of `model`; ValueError for a model kzoo cannot generate with."""
    if isinstance(model, GPTCausalLM):
        return CausalAdapter(model)
    if isinstance(model, Seq2SeqLM):
        return Seq2SeqAdapter(model)
    raise ValueError(
        f"generate: {type(model).__name__} is not a generative kzoo model; pass a kzoo.models.GPTCausalLM or "
        "Seq2SeqLM (a backbone alone has no LM head: wrap it, e.g. GPTCausalLM(backbone))."
    )
