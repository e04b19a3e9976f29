"""What the decoding loop asks of a model: the `DecodingAdapter` protocol, and `adapter_for`.

kzoo.generate knows no model class. A generative model supplies its own adapter
through a `decoding_adapter()` method (`GPTCausalLM` returns
`kzoo.models.gpt.decoding.GPTDecodingAdapter`, `Seq2SeqLM` returns
`kzoo.models.seq2seq.decoding.Seq2SeqDecodingAdapter`): the cache calls and position
handling of a family live beside its model, and the imports flow one way (kzoo.models
imports kzoo.generate, never the reverse).

An adapter turns the packed prompt tensors into next-token logits and a decoding
state, then advances that state by one token. `start`, `step`, `reorder` and `seen`
run inside the compiled loop, so they are written with `keras.ops` only.

Shapes: B rows (batch, times beams), P prompt length, N max_new_tokens, V vocabulary.
"""

from keras import ops

FAMILIES = ("causal", "seq2seq")


def repeat_rows(tree, times):
    """Each row of every tensor in `tree` (a tensor, or dicts/lists/tuples of them) repeated `times` times along
    axis 0: `(b, ...)` -> `(b * times, ...)`, row `i`'s copies adjacent (one per beam)."""
    if times == 1:
        return tree
    if isinstance(tree, dict):
        return {key: repeat_rows(value, times) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(repeat_rows(value, times) for value in tree)
    return ops.repeat(tree, times, axis=0)


def take_rows(tree, rows):
    """The rows `rows` int32 `(B,)` of every tensor in `tree` (gathered along axis 0)."""
    if isinstance(tree, dict):
        return {key: take_rows(value, rows) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(take_rows(value, rows) for value in tree)
    return ops.take(tree, rows, axis=0)


class DecodingAdapter:
    """How one model runs inside the decoding loop: prefill, one step, beam reorder.

    Subclasses set `family` and `vocabulary_size` and implement `start`, `step` and
    `seen`; `check_lengths` and `reorder` have defaults.

    Attributes:
        family: "causal" (prompts are LEFT-padded and continued) or "seq2seq" (prompts
            are RIGHT-padded encoder inputs; decoding starts from `decoder_start_id`).
        vocabulary_size: int, V.
        model: the Keras model (it owns the compiled-function cache).
    """

    family = None
    vocabulary_size = None

    def __init__(self, model):
        self.model = model

    def check_lengths(self, prompts, options):
        """Raises ValueError, before anything is compiled, when `prompts` (a `kzoo.generate.inputs.Prompts`) and
        `options.max_new_tokens` do not fit the model. The default accepts any length."""

    def start(self, arrays, options, beams):
        """Prefill. Returns `(logits float32 (B, V), state, context, first_index)`.

        Args:
            arrays: dict with "token_ids" int32 `(b, P)` (left-padded for "causal",
                right-padded for "seq2seq") and "padding_mask" int32/bool `(b, P)`.
            options: `GenerationOptions`.
            beams: int, rows per prompt (state and context are repeated, `B = b * beams`).

        `state` is what `step` updates (and `reorder` gathers), `context` what stays
        fixed; `first_index` is the position `step` feeds the first new token at.
        """
        raise NotImplementedError

    def step(self, tokens, index, state, context, options):
        """Feeds `tokens` int32 `(B,)` at position `index` (int32 scalar); returns `(logits (B, V), state)`."""
        raise NotImplementedError

    def reorder(self, state, rows):
        """Gathers the per-beam state rows `rows` int32 `(B,)` (beam search)."""
        return take_rows(state, rows)

    def seen(self, arrays, beams, options):
        """bool `(B, V)`: the ids the repetition penalty counts before the first new token."""
        raise NotImplementedError


def adapter_for(model):
    """The `DecodingAdapter` of `model` (from its `decoding_adapter()`); ValueError for a model kzoo cannot
    generate with."""
    factory = getattr(model, "decoding_adapter", None)
    if not callable(factory):
        raise ValueError(
            f"generate: {type(model).__name__} is not a generative kzoo model; pass a kzoo.models.GPTCausalLM or "
            "Seq2SeqLM (a backbone alone has no LM head: wrap it, e.g. GPTCausalLM(backbone))."
        )
    adapter = factory()
    if adapter.family not in FAMILIES:
        raise ValueError(
            f"generate: {type(model).__name__}.decoding_adapter() returned family={adapter.family!r}; a "
            f"DecodingAdapter's family is one of {', '.join(map(repr, FAMILIES))}."
        )
    return adapter
