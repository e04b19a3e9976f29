"""One example's attention maps, labelled: which token attends to which, per layer and head.

`attention_maps(backbone, inputs, token_label)` runs a backbone's `attention_scores` on one example and returns a
list of `AttentionMap`s: one per layer and kind of attention, each with the probabilities `(heads, queries, keys)`,
the sub-word tokens of both axes and where attention was not allowed (padding, future positions), so a picture can
draw those cells as masked instead of as zero attention. The kinds:

- BERT: `self-attention` (bidirectional); GPT: `self-attention` (causal);
- seq2seq: `encoder self-attention`, `decoder self-attention` (causal) and `cross-attention` (target tokens,
  the rows, against source tokens, the columns).

The heatmaps (`kzoo.visualize.heatmap`), the HTML page (`kzoo.visualize.page`), TensorBoard's eval images and
`kzoo attention` all draw these.
"""

import dataclasses

import numpy as np

SELF = "self-attention"
ENCODER_SELF = "encoder self-attention"
DECODER_SELF = "decoder self-attention"
CROSS = "cross-attention"


@dataclasses.dataclass
class AttentionMap:
    """The attention of one layer (one kind of attention) for one example.

    Attributes:
        kind: `SELF`, `ENCODER_SELF`, `DECODER_SELF` or `CROSS`.
        layer: the layer index (0-based).
        probabilities: float32 `(heads, queries, keys)`; each allowed row sums to 1.
        query_tokens: the `queries` row labels (sub-word tokens as the tokenizer spells them).
        key_tokens: the `keys` column labels.
        allowed: bool `(queries, keys)`, False where the model could not attend: a padding key or query,
            or (causal attention) a future key.
        heads: the original head index of each of the `heads` rows (after `select`).
        query_positions, key_positions: the original position of each row / column (after `select`).
    """

    kind: str
    layer: int
    probabilities: np.ndarray
    query_tokens: list
    key_tokens: list
    allowed: np.ndarray
    heads: list = None
    query_positions: list = None
    key_positions: list = None

    def __post_init__(self):
        self.probabilities = np.asarray(self.probabilities, np.float32)
        self.allowed = np.asarray(self.allowed, bool)
        num_heads, queries, keys = self.probabilities.shape
        if self.allowed.shape != (queries, keys):
            raise ValueError(f"allowed has shape {self.allowed.shape}; the probabilities need ({queries}, {keys}).")
        if len(self.query_tokens) != queries or len(self.key_tokens) != keys:
            raise ValueError(f"{len(self.query_tokens)} query and {len(self.key_tokens)} key tokens for "
                             f"probabilities of {queries} queries and {keys} keys.")
        self.heads = list(range(num_heads)) if self.heads is None else list(self.heads)
        self.query_positions = list(range(queries)) if self.query_positions is None else list(self.query_positions)
        self.key_positions = list(range(keys)) if self.key_positions is None else list(self.key_positions)

    @property
    def title(self):
        return f"{self.kind}, layer {self.layer}"

    @property
    def name(self):
        """A file-name-safe name: `self_attention_layer_0`, `cross_attention_layer_3`, ..."""
        return f"{self.kind.replace('-', '_').replace(' ', '_')}_layer_{self.layer}"

    def averaged(self):
        """`(queries, keys)`: the mean over heads (masked cells stay 0)."""
        return self.probabilities.mean(axis=0)

    def select(self, heads=None, window=None):
        """A copy with only `heads` (original indices) and the positions in `window`.

        Args:
            heads: iterable of head indices, or None for all.
            window: `(start, stop)` positions, or None for all. It cuts the queries, and the keys too where they are
                the same sequence (self-attention); cross-attention keeps every source token.
        """
        heads = self.heads if heads is None else list(heads)
        missing = [head for head in heads if head not in self.heads]
        if missing:
            raise ValueError(f"{self.title} has heads 0-{len(self.heads) - 1}; there is no head {missing[0]}.")
        rows = [self.heads.index(head) for head in heads]
        queries = np.arange(len(self.query_tokens))
        keys = np.arange(len(self.key_tokens))
        if window is not None:
            start, stop = window
            if not 0 <= start < stop:
                raise ValueError(f"window {start}:{stop} is empty; give START:STOP with 0 <= START < STOP.")
            if start >= len(queries):
                raise ValueError(f"window {start}:{stop} starts after the last of the {len(queries)} tokens.")
            queries = queries[start:stop]
            if self.kind != CROSS:
                keys = keys[start:stop]
        return AttentionMap(
            kind=self.kind, layer=self.layer,
            probabilities=self.probabilities[rows][:, queries][:, :, keys],
            query_tokens=[self.query_tokens[i] for i in queries], key_tokens=[self.key_tokens[i] for i in keys],
            allowed=self.allowed[queries][:, keys], heads=heads,
            query_positions=[self.query_positions[i] for i in queries],
            key_positions=[self.key_positions[i] for i in keys])


def attention_maps(backbone, inputs, token_label=str):
    """The labelled attention maps of one example.

    Args:
        backbone: a kzoo `BertBackbone`, `GPTBackbone` or `Seq2SeqBackbone` (a task's `.backbone`).
        inputs: the backbone's inputs for ONE example: a dict like `backbone.input` (`token_ids`, `padding_mask`,
            ...; seq2seq: `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids`,
            `decoder_padding_mask`), each of shape `(1, length)` or `(length,)`.
        token_label: `fn(id) -> str`, e.g. a kzoo tokenizer's `id_to_token`; default: the id itself.

    Returns:
        list of `AttentionMap`: the layers in order; seq2seq gives the encoder's self-attention, then the
        decoder's self-attention, then its cross-attention.
    """
    from kzoo.models import GPTBackbone, Seq2SeqBackbone

    inputs = {name: _one_row(value, name) for name, value in inputs.items()}
    scores = backbone.attention_scores({name: value[None] for name, value in inputs.items()})
    if isinstance(backbone, Seq2SeqBackbone):
        source = _labels(inputs["encoder_token_ids"], token_label)
        target = _labels(inputs["decoder_token_ids"], token_label)
        source_mask = inputs["encoder_padding_mask"].astype(bool)
        target_mask = inputs["decoder_padding_mask"].astype(bool)
        maps = [_map(ENCODER_SELF, layer, probabilities, source, source, _allowed(source_mask, source_mask))
                for layer, probabilities in enumerate(scores["encoder"])]
        for layer, layer_scores in enumerate(scores["decoder"]):  # {"self_attention": ..., "cross_attention": ...}
            maps.append(_map(DECODER_SELF, layer, layer_scores["self_attention"], target, target,
                             _allowed(target_mask, target_mask, causal=True)))
        for layer, layer_scores in enumerate(scores["decoder"]):
            maps.append(_map(CROSS, layer, layer_scores["cross_attention"], target, source,
                             _allowed(target_mask, source_mask)))
        return maps
    tokens = _labels(inputs["token_ids"], token_label)
    mask = inputs["padding_mask"].astype(bool)
    allowed = _allowed(mask, mask, causal=isinstance(backbone, GPTBackbone))
    return [_map(SELF, layer, probabilities, tokens, tokens, allowed) for layer, probabilities in enumerate(scores)]


def text_inputs(model, tokenizer, text, pair=None, target=None, max_new_tokens=32):
    """The backbone inputs of one text example, packed as the model's family is trained and served.

    - BERT: `[CLS] text [SEP]` (`[CLS] text [SEP] pair [SEP]` with `pair`, segment ids 0/1);
    - GPT: the tokenizer's start ids (e.g. BOS) + text, as a generation prompt is packed;
    - seq2seq: the source packed as `tokenizer.encode` packs it; the decoder reads the start token (the pad id)
      then `target`'s tokens, or, without `target`, the model's own greedy output for the source (at most
      `max_new_tokens`, up to the end token), so the cross-attention shows what the model attends to while it writes.

    Args:
        model: a kzoo task or backbone of the BERT, GPT or seq2seq family.
        tokenizer: its kzoo tokenizer.
        text: str; pair: str for BERT's second segment; target: str, the seq2seq decoder's text.

    Returns:
        dict of int32/bool numpy arrays of shape `(1, length)`, keyed like `backbone.input`; no padding.

    Raises:
        ValueError: an option the family does not take, or a text longer than the model's positions.
    """
    from kzoo.models import BertBackbone, GPTBackbone, Seq2SeqBackbone
    from kzoo.models.backbone import backbone_of, position_limit

    backbone = backbone_of(model)
    family = {BertBackbone: "bert", GPTBackbone: "gpt", Seq2SeqBackbone: "seq2seq"}.get(type(backbone))
    if family is None:
        raise ValueError(f"attention maps are drawn for kzoo BERT, GPT and seq2seq models, not {type(model).__name__}.")
    if pair is not None and family != "bert":
        raise ValueError(f"a text pair is a BERT input; this is a {family} model: drop the pair.")
    if target is not None and family != "seq2seq":
        raise ValueError(f"a target text is a seq2seq decoder's input; this is a {family} model: drop the target.")
    limit = position_limit(model)
    start_ids, end_ids = list(getattr(tokenizer, "start_ids", ())), list(getattr(tokenizer, "end_ids", ()))
    pieces = [_token_ids(tokenizer, text)]
    if family == "bert":
        if pair is not None:
            pieces.append(_token_ids(tokenizer, pair))
        ids = start_ids + pieces[0] + end_ids
        segments = [0] * len(ids)
        if pair is not None:
            ids += pieces[1] + end_ids
            segments += [1] * (len(pieces[1]) + len(end_ids))
        _check_length(len(ids), limit, "the text" if pair is None else "the text and its pair")
        return {"token_ids": _row(ids), "segment_ids": _row(segments), "padding_mask": _row([True] * len(ids))}
    if family == "gpt":
        ids = start_ids + pieces[0]
        _check_length(len(ids), limit, "the text")
        return {"token_ids": _row(ids), "padding_mask": _row([True] * len(ids))}
    source = start_ids + pieces[0] + end_ids
    _check_length(len(source), limit, "the text")
    decoder_start = int(tokenizer.pad_id)
    if target is not None:
        written = _token_ids(tokenizer, target)
    else:
        written = _greedy_output(model, source, tokenizer, max_new_tokens, decoder_start)
    decoder = [decoder_start] + written
    _check_length(len(decoder), limit, "the target")
    return {"encoder_token_ids": _row(source), "encoder_padding_mask": _row([True] * len(source)),
            "decoder_token_ids": _row(decoder), "decoder_padding_mask": _row([True] * len(decoder))}


def _token_ids(tokenizer, text):
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a non-empty text, got {text!r}.")
    return [int(i) for i in np.asarray(tokenizer.tokenize(text)).reshape(-1)]


def _check_length(length, limit, what):
    if limit is not None and length > limit:
        raise ValueError(f"{what} is {length} tokens long with its special tokens; the model reads at most {limit}: "
                         "shorten it.")


def _row(values):
    values = np.asarray(values)
    return values[None].astype(bool if values.dtype == bool else np.int32)


def _greedy_output(model, source, tokenizer, max_new_tokens, decoder_start):
    from kzoo.generate import generate
    from kzoo.models import Seq2SeqLM

    if not isinstance(model, Seq2SeqLM):
        raise ValueError("a seq2seq backbone has no language-model head to write an output: pass the target text.")
    eos = tokenizer.special_token_ids.get("eos")
    stops = [eos] if eos is not None else None
    row = generate(model, [source], max_new_tokens=max_new_tokens, stop_token_ids=stops, pad_id=tokenizer.pad_id,
                   decoder_start_id=decoder_start)[0]
    written = [int(i) for i in np.asarray(row)]
    return written[:written.index(eos)] if eos in written else written


def token_labels(tokenizer):
    """`fn(id) -> str` naming a token on a map's axes: the piece `tokenizer` spells it as (`##ing`, `▁the`,
    `Ġcat`), or the id itself when there is no tokenizer or the id is past its vocabulary (a table padded for GPUs)."""
    if tokenizer is None:
        return str

    def label(token_id):
        try:
            return tokenizer.id_to_token(token_id)
        except ValueError:
            return str(token_id)

    return label


def _one_row(value, name):
    import keras

    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ValueError(f"attention maps are drawn for one example: {name!r} has shape {array.shape}; pass "
                         "(length,) or (1, length).")
    return array


def _labels(ids, token_label):
    return [str(token_label(int(i))) for i in ids]


def _allowed(query_mask, key_mask, causal=False):
    allowed = query_mask[:, None] & key_mask[None, :]
    if causal:
        allowed &= np.tril(np.ones(allowed.shape, bool))
    return allowed


def _map(kind, layer, probabilities, query_tokens, key_tokens, allowed):
    import keras

    probabilities = np.asarray(keras.ops.convert_to_numpy(probabilities), np.float32)[0]
    return AttentionMap(kind, layer, probabilities, query_tokens, key_tokens, allowed)
