"""Prompts in, tokens out: host-side conversion between user inputs and padded id arrays.

Prompts may come as
  * a dict like the model's inputs (`token_ids` + `padding_mask`, or for seq2seq
    `encoder_token_ids` + `encoder_padding_mask`), padded on either side;
  * a 2-D int array (every position real) with an optional `padding_mask`;
  * ragged rows: a list of lists / 1-D arrays of ids, or a `tf.RaggedTensor`;
  * one 1-D list/array of ids (the result is then 1-D too);
  * text (str or list of str) when a tokenizer is given.

The real tokens of a row are the positions its padding mask marks, in order. They
are re-packed here: causal prompts LEFT-padded (so every row's last prompt token
sits in the same column and one prefill pass serves the whole batch), encoder
prompts RIGHT-padded (encoder positions then start at 0 in every row).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Prompts:
    """Packed prompts.

    Attributes:
        token_ids: int32 `(b, p)`, padded with the pad id (left or right, see `side`).
        padding_mask: bool `(b, p)`, True on real tokens.
        lengths: int32 `(b,)`, real tokens per row (all >= 1).
        single: bool, the input was one prompt (return one row, unbatched).
        text: bool, the input was text (return text).
        side: "left" or "right".
    """

    token_ids: np.ndarray
    padding_mask: np.ndarray
    lengths: np.ndarray
    single: bool
    text: bool
    side: str


def _to_numpy(value):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _is_text(inputs):
    if isinstance(inputs, (str, bytes)):
        return True
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(s, (str, bytes)) for s in inputs):
        return True
    return isinstance(inputs, np.ndarray) and inputs.dtype.kind in "USO" and inputs.size and isinstance(
        inputs.flat[0], (str, bytes)
    )


def _rows_from_dense(ids, mask):
    ids = _to_numpy(ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(
            f"generate: token ids must be 1-D (one prompt) or 2-D (batch, length), got shape {ids.shape}."
        )
    if mask is None:
        mask = np.ones(ids.shape, bool)
    else:
        mask = _to_numpy(mask)
        if mask.ndim == 1:
            mask = mask[None]
        if mask.shape != ids.shape:
            raise ValueError(
                f"generate: padding_mask has shape {mask.shape} but the token ids have shape {ids.shape}; "
                "pass one mask entry per token (1 = real, 0 = padding)."
            )
        mask = mask.astype(bool)
    return [row[keep] for row, keep in zip(ids, mask, strict=True)]


def _rows(inputs, padding_mask, id_key, mask_key):
    """(list of 1-D id arrays, single) from any accepted non-text form."""
    if isinstance(inputs, dict):
        if id_key not in inputs and "token_ids" in inputs:
            id_key, mask_key = "token_ids", "padding_mask"
        if id_key not in inputs:
            raise ValueError(
                f"generate: a dict prompt needs '{id_key}' (and optionally '{mask_key}'); got keys {sorted(inputs)}."
            )
        ids = _to_numpy(inputs[id_key])
        return _rows_from_dense(ids, inputs.get(mask_key, padding_mask)), ids.ndim == 1
    if type(inputs).__name__ == "RaggedTensor":
        return [np.asarray(row) for row in inputs.to_list()], False
    if isinstance(inputs, (list, tuple)) and inputs and all(
        isinstance(row, (list, tuple, np.ndarray)) for row in inputs
    ):
        if padding_mask is not None:
            raise ValueError("generate: ragged prompts (a list of rows) carry their own lengths; drop padding_mask.")
        return [np.asarray(row).reshape(-1) for row in inputs], False
    if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
        raise ValueError("generate: the prompt batch is empty; pass at least one prompt.")
    ids = _to_numpy(inputs)
    return _rows_from_dense(ids, padding_mask), ids.ndim == 1


def _check_rows(rows, vocabulary_size, what):
    if not rows:
        raise ValueError(f"generate: the {what} batch is empty; pass at least one prompt.")
    for index, row in enumerate(rows):
        if row.size == 0:
            raise ValueError(
                f"generate: {what} {index} is empty (no real tokens). Every prompt needs at least one token; "
                "start an unconditional causal LM from its BOS/end-of-text id (GPT-2: 50256)."
            )
        if row.dtype.kind not in "iu":
            raise ValueError(f"generate: {what} {index} holds {row.dtype} values; token ids must be integers.")
        if row.min() < 0 or row.max() >= vocabulary_size:
            raise ValueError(
                f"generate: {what} {index} has ids outside [0, {vocabulary_size}) (min {row.min()}, max "
                f"{row.max()}); check that the tokenizer matches the model's vocabulary."
            )


def _tokenize(tokenizer, texts, family):
    """Text -> list of id rows. Causal: `kzoo.text.packing.pack_prompt`'s rule, the one the exported `generate`
    signature follows (the tokenizer's `start_ids`, e.g. BOS, + text; no end token, which would end the prompt).
    Seq2seq: the tokenizer's `start_ids` + text + `end_ids` (e.g. T5's trailing </s>), as its `encode` packs it."""
    from kzoo.text import packing  # here: kzoo.generate itself stays free of TensorFlow (text comes with kzoo.text)

    tokens = tokenizer.tokenize(list(texts))
    start_ids = tuple(getattr(tokenizer, "start_ids", ()))
    if family != "seq2seq":
        packed = packing.pack_prompt(tokens, start_ids=start_ids)
        return [row[keep] for row, keep in zip(packed["token_ids"].numpy(), packed["padding_mask"].numpy(),
                                               strict=True)]
    end_ids = np.asarray(getattr(tokenizer, "end_ids", ()), np.int64)
    return [np.concatenate([np.asarray(start_ids, np.int64), np.asarray(row, np.int64), end_ids])
            for row in tokens.to_list()]


def prepare(inputs, padding_mask, tokenizer, family, vocabulary_size, pad_id):
    """Packs prompts for `family` ("causal": left padding, "seq2seq": right padding).

    Args:
        inputs: see the module docstring.
        padding_mask: optional `(b, s)` mask for array inputs.
        tokenizer: a `kzoo.text` tokenizer or None.
        family: "causal" or "seq2seq".
        vocabulary_size: int, for the id range check.
        pad_id: int, the padding id.

    Returns:
        `Prompts`.

    Raises:
        ValueError: empty prompt or batch, ids out of range, text without a tokenizer.
    """
    id_key, mask_key, what = (
        ("encoder_token_ids", "encoder_padding_mask", "encoder prompt")
        if family == "seq2seq"
        else ("token_ids", "padding_mask", "prompt")
    )
    text = _is_text(inputs)
    if text:
        if tokenizer is None:
            raise ValueError(
                "generate: got text prompts but no tokenizer; pass tokenizer= (e.g. "
                "kzoo.text.tokenizer_from_files(imported.tokenizer_files)) or token ids."
            )
        single = isinstance(inputs, (str, bytes))
        texts = [inputs] if single else list(inputs)
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        rows = _tokenize(tokenizer, texts, family)
    else:
        rows, single = _rows(inputs, padding_mask, id_key, mask_key)
    _check_rows(rows, vocabulary_size, what)
    lengths = np.array([row.size for row in rows], np.int32)
    width = int(lengths.max())
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), bool)
    side = "right" if family == "seq2seq" else "left"
    for index, row in enumerate(rows):
        span = slice(0, row.size) if side == "right" else slice(width - row.size, width)
        ids[index, span] = row
        mask[index, span] = True
    return Prompts(ids, mask, lengths, single, text, side)


def cut_at_stop(row, stop_token_ids, keep_stop=True):
    """The tokens of one generated row up to its first stop token (kept or dropped)."""
    row = np.asarray(row)
    if stop_token_ids:
        hits = np.flatnonzero(np.isin(row, np.asarray(stop_token_ids)))
        if hits.size:
            return row[: hits[0] + 1] if keep_stop else row[: hits[0]]
    return row


def finish(tokens, lengths, prompts, tokenizer, options):
    """Device results -> what `generate` returns.

    Args:
        tokens: int32 `(b, n)` new tokens, `pad_id` after a row's end.
        lengths: int `(b,)` new tokens per row (stop token included).
        prompts: the `Prompts` the call started from.
        tokenizer: a tokenizer or None.
        options: the `GenerationOptions`.

    Returns:
        Ids: int32 `(b, n)` (or `(n,)` for one prompt), `n` the longest row, rows
        padded with `pad_id` after their stop token. Text: list of str (or one str),
        the new text only, cut before the stop token.
    """
    tokens = np.asarray(tokens, np.int32)
    width = int(np.max(lengths)) if len(lengths) else 0
    tokens = tokens[:, :width]
    if not prompts.text:
        return tokens[0] if prompts.single else tokens
    rows = [cut_at_stop(row[:length], options.stop_token_ids, keep_stop=False).tolist()
            for row, length in zip(tokens, lengths, strict=True)]
    texts = tokenizer.detokenize([list(map(int, row)) for row in rows]) if rows else []
    texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in _to_numpy(texts).tolist()]
    return texts[0] if prompts.single else texts
