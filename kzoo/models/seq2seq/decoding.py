"""How a `Seq2SeqLM` runs inside `kzoo.generate`'s decoding loop: encoder pass, one decoder step, beam reorder.

The encoder runs once over the RIGHT-padded prompts; the cross-attention keys and
values of every decoder block are computed once; the decoder starts from
`decoder_start_id` at position 0 and feeds one token per step.

Without a cache (`use_cache=False`) the state is the decoder token buffer and every
step reruns the full decoder over it (slow; a reference for tests).

Everything but `check_lengths` runs inside the compiled loop (`keras.ops` only).
Shapes: B rows (batch, times beams), S encoder prompt length, N max_new_tokens, V vocabulary.
"""

from keras import ops

from kzoo.generate.adapters import DecodingAdapter, repeat_rows
from kzoo.layers.cache_updates import write_at


class Seq2SeqDecodingAdapter(DecodingAdapter):
    """Decoding state of a `Seq2SeqLM` (see the module docstring).

    Args:
        model: a `Seq2SeqLM`.
    """

    family = "seq2seq"

    def __init__(self, model):
        super().__init__(model)
        self.backbone = model.backbone
        self.vocabulary_size = self.backbone.vocabulary_size
        self.bounded = self.backbone.position_embedding != "relative"
        self.max_sequence_length = self.backbone.max_sequence_length

    def logits(self, hidden):
        """float32 `(B, V)` logits from `(B, d)` decoder hidden states (the task's logits bias included)."""
        return ops.cast(self.model.token_logits(hidden), "float32")

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
            options: `GenerationOptions`.
            beams: int, rows per prompt (the state and context are repeated).
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
        logits = self.logits(hidden[:, 0])
        return repeat_rows(logits, beams), repeat_rows(state, beams), repeat_rows(context, beams), 1

    def step(self, tokens, index, state, context, options):
        """Feeds decoder `tokens` int32 `(B,)` at position `index`; returns `(logits, state)`."""
        index = ops.cast(index, "int32")
        if options.use_cache:
            hidden, cache = self.backbone.decode_with_cache(
                tokens[:, None], state["cache"], context["cross"], index, context["encoder_mask"]
            )
            return self.logits(hidden[:, 0]), {"cache": cache}
        buffer = write_at(state["buffer"], index, tokens[:, None])
        batch, total = ops.shape(buffer)[0], ops.shape(buffer)[1]
        hidden = self.backbone.decode(
            buffer, ops.ones((batch, total), "bool"), context["encoded"], context["encoder_mask"]
        )
        return self.logits(ops.take(hidden, index, axis=1)), {"buffer": buffer}

    def seen(self, arrays, beams, options):
        """bool `(B, V)`: the decoder start token (the decoder sequence `transformers` penalises)."""
        batch = ops.shape(arrays["token_ids"])[0]
        vocabulary = ops.arange(self.vocabulary_size, dtype="int32")
        seen = ops.broadcast_to(vocabulary[None, :] == options.decoder_start_id, (batch, self.vocabulary_size))
        return repeat_rows(seen, beams)
