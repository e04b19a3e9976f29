"""Generation options: one frozen record, checked before anything is traced.

Every check raises `ValueError` naming the argument and saying how to fix it, so a
bad value never reaches a compiled loop (where it would surface as NaNs or a
silently clamped gather).
"""

import dataclasses
import math
import numbers

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")
EARLY_STOPPING = (True, False, "never")
DEFAULT_TOP_K = 50
DEFAULT_TOP_P = 0.9


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """The static settings of one `generate` call (part of the compile-cache key).

    Attributes:
        strategy: "greedy", "sample" (the full distribution), "top_k", "top_p" or "beam".
        max_new_tokens: int >= 1, tokens generated per row at most.
        temperature: float > 0, divides the logits before sampling (sampling only).
        top_k: int >= 1 or None; "top_k" samples among the k likeliest tokens
            (default 50); with "top_p" it is an optional cut applied first.
        top_p: float in (0, 1] or None; "top_p" samples from the smallest set of
            likeliest tokens whose probability reaches `top_p` (default 0.9).
        num_beams: int >= 1, beams per prompt ("beam" only).
        length_penalty: float, beam scores are `sum log p / new_length ** length_penalty`.
        early_stopping: True, False or "never" (Hugging Face semantics, see `beam`).
        repetition_penalty: float > 0; 1.0 disables it (CTRL, Keskar et al. 2019).
        stop_token_ids: tuple of ints; a row ends after emitting one of them.
        min_length: int >= 0, new tokens before a stop token may be emitted.
        pad_id: int, fills rows after they stop (and the left padding of prompts).
        decoder_start_id: int, first decoder token of seq2seq models.
        use_cache: bool, KV-cached decoding (False recomputes the whole prefix each
            step; for tests and debugging).
        jit_compile: bool, XLA under TensorFlow (JAX always compiles with XLA).
    """

    strategy: str = "greedy"
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    repetition_penalty: float = 1.0
    stop_token_ids: tuple = ()
    min_length: int = 0
    pad_id: int = 0
    decoder_start_id: int | None = None
    use_cache: bool = True
    jit_compile: bool = True

    @property
    def sampling(self):
        return self.strategy in ("sample", "top_k", "top_p")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value):
    """NumPy scalars -> Python ints/floats, so options hash and print plainly."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def make_options(vocabulary_size, **arguments):
    """Checks the `generate` arguments and returns `GenerationOptions`.

    Args:
        vocabulary_size: int, the model's vocabulary (token ids must lie below it).
        **arguments: the fields of `GenerationOptions`.

    Raises:
        ValueError: an argument is out of range; the message names it and the fix.
    """
    stop = arguments.get("stop_token_ids")
    if stop is None:
        stop = ()
    elif _is_int(stop):
        stop = (stop,)
    try:
        stop = tuple(_plain(i) for i in stop)
    except TypeError:
        raise ValueError(
            f"generate: stop_token_ids must be an int or a list of ints, got {stop!r}."
        ) from None
    arguments = {name: _plain(value) for name, value in arguments.items()}
    arguments["stop_token_ids"] = stop
    options = GenerationOptions(**arguments)
    strategy = options.strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"generate: unknown strategy={strategy!r}; use one of {', '.join(map(repr, STRATEGIES))}.")
    if not _is_int(options.max_new_tokens) or options.max_new_tokens < 1:
        raise ValueError(
            f"generate: max_new_tokens must be a positive integer, got {options.max_new_tokens!r}; "
            "pass the number of tokens to generate, e.g. max_new_tokens=32."
        )
    if not _is_number(options.temperature) or options.temperature <= 0:
        raise ValueError(
            f"generate: temperature must be a number > 0, got {options.temperature!r}; use 1.0 for the model's "
            "distribution, lower values to sharpen it, or strategy='greedy' for argmax decoding."
        )
    if options.top_k is not None and (not _is_int(options.top_k) or options.top_k < 1):
        raise ValueError(
            f"generate: top_k must be an integer >= 1, got {options.top_k!r}; top_k=1 is greedy, "
            f"{DEFAULT_TOP_K} is the usual choice."
        )
    if options.top_k is not None and options.top_k > vocabulary_size:
        raise ValueError(
            f"generate: top_k={options.top_k} exceeds the vocabulary size {vocabulary_size}; pass at most "
            f"{vocabulary_size} (or strategy='sample' for the whole distribution)."
        )
    if options.top_p is not None and (not _is_number(options.top_p) or not 0.0 < options.top_p <= 1.0):
        raise ValueError(
            f"generate: top_p must lie in (0, 1], got {options.top_p!r}; it is the probability mass the sampled "
            "nucleus must reach (e.g. top_p=0.9; 1.0 keeps every token)."
        )
    if not _is_int(options.num_beams) or options.num_beams < 1:
        raise ValueError(
            f"generate: num_beams must be an integer >= 1, got {options.num_beams!r}; use num_beams=1 for "
            "greedy-equivalent search or e.g. 4 beams."
        )
    if options.num_beams > 1 and strategy != "beam":
        raise ValueError(
            f"generate: num_beams={options.num_beams} only applies to strategy='beam' (got strategy={strategy!r}); "
            "pass strategy='beam' or leave num_beams at 1."
        )
    if not _is_number(options.length_penalty):
        raise ValueError(f"generate: length_penalty must be a finite number, got {options.length_penalty!r}.")
    if options.early_stopping not in EARLY_STOPPING or options.early_stopping.__class__ not in (bool, str):
        raise ValueError(
            f"generate: early_stopping must be True, False or 'never', got {options.early_stopping!r}."
        )
    if not _is_number(options.repetition_penalty) or options.repetition_penalty <= 0:
        raise ValueError(
            f"generate: repetition_penalty must be a number > 0, got {options.repetition_penalty!r}; 1.0 turns "
            "it off, values above 1 (e.g. 1.2) discourage repeats."
        )
    if not _is_int(options.min_length) or options.min_length < 0:
        raise ValueError(
            f"generate: min_length (minimum new tokens before a stop token) must be an integer >= 0, got "
            f"{options.min_length!r}."
        )
    for name in ("pad_id", "decoder_start_id"):
        value = getattr(options, name)
        if value is None and name == "decoder_start_id":
            continue
        if not _is_int(value) or not 0 <= value < vocabulary_size:
            raise ValueError(
                f"generate: {name} must be a token id in [0, {vocabulary_size}), got {value!r}; pass the "
                "tokenizer's id (e.g. its pad or eos id)."
            )
    stop = options.stop_token_ids
    if not all(_is_int(i) and 0 <= i < vocabulary_size for i in stop):
        raise ValueError(
            f"generate: stop_token_ids must be token ids in [0, {vocabulary_size}), got {list(stop)!r}; pass the "
            "end-of-sequence id(s) of your tokenizer."
        )
    if strategy == "beam":
        keep = max(2, 1 + len(stop))
        if keep > vocabulary_size:
            raise ValueError(
                f"generate: beam search keeps {keep} candidates per beam, more than the vocabulary of "
                f"{vocabulary_size}; pass fewer stop_token_ids."
            )
    if strategy == "top_k" and options.top_k is None:
        options = dataclasses.replace(options, top_k=min(DEFAULT_TOP_K, vocabulary_size))
    if strategy == "top_p" and options.top_p is None:
        options = dataclasses.replace(options, top_p=DEFAULT_TOP_P)
    return options
