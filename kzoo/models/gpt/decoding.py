"""How a `GPTCausalLM` runs inside `kzoo.generate`'s decoding loop: prefill, one step, beam reorder.

Prompts are LEFT-padded to a common length `P`, so every row's last prompt token is
in column `P - 1`. One prefill pass over `(b, P)` fills the KV caches (length
`P + N`) and gives the first logits; step `t` then feeds the token generated at
buffer position `P + t`. Padded slots are masked out of attention, and learned
position embeddings use per-row positions counted from each row's first real token,
so a padded row decodes exactly as it would alone.

Without a cache (`use_cache=False`) the state is the token buffer and every step
reruns the full forward pass over it (slow; a reference for tests).

Everything but `check_lengths` runs inside the compiled loop (`keras.ops` only).
Shapes: B rows (batch, times beams), P prompt length, N max_new_tokens, V vocabulary.
"""

from keras import ops

from kzoo.generate.adapters import DecodingAdapter, repeat_rows
from kzoo.generate.processors import seen_tokens
from kzoo.layers.cache_updates import write_at


class GPTDecodingAdapter(DecodingAdapter):
    """Decoding state of a `GPTCausalLM` (see the module docstring).

    Args:
        model: a `GPTCausalLM`.
    """

    family = "causal"

    def __init__(self, model):
        super().__init__(model)
        self.backbone = model.backbone
        self.vocabulary_size = self.backbone.vocabulary_size
        self.learned_positions = self.backbone.position_embedding == "learned"
        self.max_sequence_length = self.backbone.max_sequence_length

    def logits(self, hidden):
        """float32 `(B, V)` logits from `(B, d)` hidden states."""
        return ops.cast(self.backbone.token_logits(hidden), "float32")

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
        logits = self.logits(hidden[:, -1])
        context = {"mask": mask, "positions": positions}
        return repeat_rows(logits, beams), repeat_rows(state, beams), repeat_rows(context, beams), prompt_length

    def step(self, tokens, index, state, context, options):
        """Feeds `tokens` int32 `(B,)` at buffer position `index`; returns `(logits, state)`."""
        index = ops.cast(index, "int32")
        if options.use_cache:
            positions = ops.take(context["positions"], index, axis=1)[:, None]  # (B, 1)
            hidden, cache = self.backbone.call_with_cache(
                tokens[:, None], state["cache"], index, padding_mask=context["mask"], position_ids=positions
            )
            return self.logits(hidden[:, 0]), {"cache": cache}
        buffer = write_at(state["buffer"], index, tokens[:, None])
        hidden, _ = self.backbone.call_with_cache(
            buffer, None, 0, padding_mask=context["mask"], position_ids=context["positions"]
        )
        return self.logits(ops.take(hidden, index, axis=1)), {"buffer": buffer}

    def seen(self, arrays, beams, options):
        """bool `(B, V)` ids in the prompts (for the repetition penalty); padding excluded."""
        seen = seen_tokens(ops.cast(arrays["token_ids"], "int32"), arrays["padding_mask"], self.vocabulary_size)
        return repeat_rows(seen, beams)
