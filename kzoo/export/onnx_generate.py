"""Greedy generation with ONNX Runtime on an `export_onnx` directory (NumPy + onnxruntime only).

`OnnxGenerator(export_dir).generate(prompts, max_new_tokens=...)` reproduces
`model.generate(prompts, strategy="greedy", ...)` token for token, with the same
conventions (see `kzoo.models.gpt.decoding` and `kzoo.models.seq2seq.decoding`):

* GPT (`GPTCausalLM`): prompts are LEFT-padded to a common length `P`; `decoder_model`
  runs once over them (prefill) and returns the logits and the present keys/values;
  each step feeds the newest token to `decoder_with_past_model` with the padding
  mask over all `P + t + 1` positions. Learned position embeddings get per-row
  positions counted from each row's first real token.
* Seq2seq (`Seq2SeqLM`): prompts are RIGHT-padded; `encoder_model` runs once and also
  returns every decoder block's cross-attention keys/values; decoding starts from
  `decoder_start_id` with `decoder_model`, then one token per step with
  `decoder_with_past_model`.

A row stops after its first stop token; later slots hold `pad_id`. The loop ends when
every row has stopped or after `max_new_tokens`. Nothing here imports TensorFlow
or Keras.

Legend: b batch, P prompt length, N max_new_tokens, V vocabulary.
"""

import json
import os

import numpy as np

from kzoo.export.onnx.convert import METADATA_FILE


def _pack(prompts, padding_mask, side, pad_id, vocabulary_size):
    """Prompts -> (ids int32 (b, P), mask bool (b, P), single). `prompts`: a 2-D array (with
    an optional mask: the real tokens of a row are the masked ones, in order), a list of
    id lists, or one 1-D list/array of ids."""
    single = False
    if isinstance(prompts, (list, tuple)) and prompts and all(
        isinstance(row, (list, tuple, np.ndarray)) for row in prompts
    ):
        if padding_mask is not None:
            raise ValueError("OnnxGenerator.generate: ragged prompts (a list of rows) carry their own lengths; "
                             "drop padding_mask.")
        rows = [np.asarray(row).reshape(-1) for row in prompts]
    else:
        ids = np.asarray(prompts)
        if ids.ndim == 1:
            single, ids = True, ids[None]
        if ids.ndim != 2:
            raise ValueError(f"OnnxGenerator.generate: token ids must be 1-D or 2-D (batch, length), got shape "
                             f"{ids.shape}.")
        mask = np.ones(ids.shape, bool) if padding_mask is None else np.asarray(padding_mask).reshape(ids.shape)
        rows = [row[keep.astype(bool)] for row, keep in zip(ids, mask, strict=True)]
    if not rows:
        raise ValueError("OnnxGenerator.generate: the prompt batch is empty; pass at least one prompt.")
    for index, row in enumerate(rows):
        if row.size == 0:
            raise ValueError(f"OnnxGenerator.generate: prompt {index} has no real tokens; every prompt needs one.")
        if row.dtype.kind not in "iu" or row.min() < 0 or row.max() >= vocabulary_size:
            raise ValueError(f"OnnxGenerator.generate: prompt {index} must hold integer ids in [0, "
                             f"{vocabulary_size}), got {row.dtype} values in [{row.min()}, {row.max()}].")
    width = max(row.size for row in rows)
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for index, row in enumerate(rows):
        span = slice(0, row.size) if side == "right" else slice(width - row.size, width)
        ids[index, span] = row
        mask[index, span] = True
    return ids, mask, single


class OnnxGenerator:
    """Greedy decoding over the ONNX graphs of a `GPTCausalLM` or `Seq2SeqLM` export.

    Args:
        export_dir: an `kzoo.export.export_onnx` output directory (with its decoding graphs).
        int8: bool, use the `quantize_onnx` int8 graphs instead of the float32 ones.
        providers: onnxruntime execution providers (default: CPU).
        session_options: an `onnxruntime.SessionOptions` or None.

    Example:
        >>> generator = OnnxGenerator("out/onnx")
        >>> generator.generate([[5, 17, 33], [7, 8]], max_new_tokens=16, stop_token_ids=[2])
    """

    def __init__(self, export_dir, int8=False, providers=None, session_options=None):
        import onnxruntime as ort

        export_dir = os.fspath(export_dir)
        path = os.path.join(export_dir, METADATA_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"OnnxGenerator: {export_dir!r} holds no {METADATA_FILE}; pass the output_dir of "
                             "kzoo.export.export_onnx.")
        with open(path) as handle:
            self.metadata = json.load(handle)
        if "decoding" not in self.metadata:
            raise ValueError(
                f"OnnxGenerator: {export_dir!r} holds a {self.metadata['model_class']} export without decoding "
                "graphs; export a GPTCausalLM or Seq2SeqLM with export_onnx(..., decoding=True)."
            )
        self.family = self.metadata["family"]
        self.sizes = self.metadata["decoding"]
        needed = ["decoder", "decoder_with_past"] + (["encoder"] if self.family == "seq2seq" else [])
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.log_severity_level = 3
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {}
        for name in needed:
            entry = self.metadata["graphs"][name]
            file = entry.get("int8_file") if int8 else entry["file"]
            if file is None:
                raise ValueError(f"OnnxGenerator: no int8 {name!r} graph in {export_dir!r}; run "
                                 "kzoo.export.quantize_onnx first.")
            self.sessions[name] = ort.InferenceSession(os.path.join(export_dir, file), session_options,
                                                       providers=providers)
        self.input_names = {name: {i.name for i in session.get_inputs()} for name, session in self.sessions.items()}
        self.learned_positions = "position_ids" in self.input_names["decoder"]

    def _run(self, name, feeds):
        session = self.sessions[name]
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(names, feeds), strict=True))
        invalid = outputs.get("invalid_inputs")  # the graphs' own range check (see kzoo.export.onnx)
        if invalid is not None and np.any(invalid):
            rows = np.flatnonzero(invalid).tolist()
            raise ValueError(f"OnnxGenerator: the {name!r} graph flagged rows {rows} as holding an id, position or "
                             "mask value out of range (invalid_inputs); check the prompts and pad_id / "
                             "decoder_start_id.")
        return outputs

    def _check_ids(self, **ids):
        vocabulary = self.sizes["vocabulary_size"]
        for name, values in ids.items():
            for value in np.atleast_1d(np.asarray(values, dtype=object)).ravel():
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < vocabulary:
                    raise ValueError(f"OnnxGenerator.generate: {name} must hold int ids in [0, {vocabulary}), "
                                     f"got {values!r}.")

    def _past(self, outputs):
        return {f"past_key_values.{i}.{part}": outputs[f"present.{i}.{part}"]
                for i in range(self.sizes["num_layers"]) for part in ("key", "value")}

    def _check_lengths(self, width, max_new_tokens):
        limit = self.sizes["max_sequence_length"]
        if self.family == "gpt" and self.sizes["position_embedding"] == "learned" and width + max_new_tokens > limit:
            raise ValueError(f"OnnxGenerator.generate: a prompt of {width} tokens plus max_new_tokens="
                             f"{max_new_tokens} exceeds max_sequence_length={limit} learned positions.")
        if self.family == "seq2seq" and self.sizes["position_embedding"] != "relative":
            if width > limit or 1 + max_new_tokens > limit:
                raise ValueError(f"OnnxGenerator.generate: the encoder prompt ({width} tokens) or 1 + "
                                 f"max_new_tokens={max_new_tokens} exceeds max_sequence_length={limit}.")

    def generate(self, prompts, padding_mask=None, max_new_tokens=32, stop_token_ids=None, pad_id=0,
                 decoder_start_id=None, min_length=0):
        """Greedy continuation of `prompts`, like `model.generate(..., strategy="greedy")`.

        Args:
            prompts: int ids: a 2-D array `(b, s)` (with `padding_mask`, padded on either
                side), a list of id lists, or one 1-D list/array.
            padding_mask: int/bool `(b, s)`, 1 on real tokens, for array prompts.
            max_new_tokens: int >= 1.
            stop_token_ids: int or list of ints in [0, V); a row ends after one of them.
            pad_id: int in [0, V), pads prompts and the slots after a row's stop token.
            decoder_start_id: int in [0, V), first decoder token of a seq2seq model (default `pad_id`).
            min_length: int >= 0, new tokens before a stop token is allowed.

        Returns:
            int32 `(b, n)` NEW tokens (`n` the longest row), or `(n,)` for one 1-D prompt.

        Raises:
            ValueError: an id outside [0, V) (prompts, pad_id, decoder_start_id, stop_token_ids), an empty prompt,
                a bad option, or a graph that flags a row in `invalid_inputs`.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise ValueError(f"OnnxGenerator.generate: max_new_tokens must be an int >= 1, got {max_new_tokens!r}.")
        self._check_ids(pad_id=pad_id, **({} if stop_token_ids is None else {"stop_token_ids": stop_token_ids}),
                        **({} if decoder_start_id is None else {"decoder_start_id": decoder_start_id}))
        if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 0:
            raise ValueError(f"OnnxGenerator.generate: min_length must be an int >= 0, got {min_length!r}.")
        stops = [] if stop_token_ids is None else [int(i) for i in np.atleast_1d(stop_token_ids)]
        side = "right" if self.family == "seq2seq" else "left"
        ids, mask, single = _pack(prompts, padding_mask, side, pad_id, self.sizes["vocabulary_size"])
        self._check_lengths(ids.shape[1], max_new_tokens)
        if self.family == "gpt":
            logits, step = self._start_causal(ids, mask, max_new_tokens)
        else:
            start = pad_id if decoder_start_id is None else decoder_start_id
            logits, step = self._start_seq2seq(ids, mask, start)
        batch = ids.shape[0]
        tokens = np.full((batch, max_new_tokens), pad_id, np.int32)
        finished = np.zeros(batch, bool)
        lengths = np.zeros(batch, np.int32)
        t = 0
        while t < max_new_tokens and not finished.all():
            scores = logits.astype(np.float32)
            if min_length > t and stops:
                scores = scores.copy()
                scores[:, stops] = -np.inf
            token = np.where(finished, pad_id, np.argmax(scores, axis=-1)).astype(np.int32)
            tokens[:, t] = token
            stopped = np.isin(token, stops) & ~finished
            lengths = np.where(stopped, t + 1, lengths)
            finished |= stopped
            t += 1
            if t < max_new_tokens and not finished.all():
                logits = step(token, t - 1)
        lengths = np.where(finished, lengths, t)
        tokens = tokens[:, : int(lengths.max())]
        return tokens[0] if single else tokens

    def _start_causal(self, ids, mask, max_new_tokens):
        """Prefill over the left-padded prompts; returns (last logits (b, V), step function)."""
        batch, prompt_length = ids.shape
        total = prompt_length + max_new_tokens
        full_mask = np.concatenate([mask, np.ones((batch, max_new_tokens), bool)], axis=1).astype(np.int32)
        pad_count = prompt_length - mask.sum(axis=1)
        positions = np.maximum(np.arange(total)[None, :] - pad_count[:, None], 0).astype(np.int32)  # (b, P + N)
        feeds = {"token_ids": ids, "padding_mask": full_mask[:, :prompt_length]}
        if self.learned_positions:
            feeds["position_ids"] = positions[:, :prompt_length]
        outputs = self._run("decoder", feeds)
        state = {"past": self._past(outputs)}

        def step(token, t):
            index = prompt_length + t  # buffer position of `token`
            feeds = {"token_ids": token[:, None], "padding_mask": full_mask[:, : index + 1], **state["past"]}
            if self.learned_positions:
                feeds["position_ids"] = positions[:, index : index + 1]
            outputs = self._run("decoder_with_past", feeds)
            state["past"] = self._past(outputs)
            return outputs["logits"][:, -1]

        return outputs["logits"][:, -1], step

    def _start_seq2seq(self, ids, mask, start_id):
        """Encoder pass and the decoder start token; returns (logits (b, V), step function)."""
        encoder_mask = mask.astype(np.int32)
        encoded = self._run("encoder", {"encoder_token_ids": ids, "encoder_padding_mask": encoder_mask})
        cross = {name: value for name, value in encoded.items() if name.startswith("cross_attention.")}
        start = np.full((ids.shape[0], 1), start_id, np.int32)
        outputs = self._run("decoder", {"decoder_token_ids": start, "encoder_padding_mask": encoder_mask, **cross})
        state = {"past": self._past(outputs)}

        def step(token, t):
            feeds = {"decoder_token_ids": token[:, None], "encoder_padding_mask": encoder_mask, **cross,
                     **state["past"]}
            outputs = self._run("decoder_with_past", feeds)
            state["past"] = self._past(outputs)
            return outputs["logits"][:, -1]

        return outputs["logits"][:, 0], step


def generate(export_dir, prompts, **options):
    """One-shot `OnnxGenerator(export_dir).generate(prompts, **options)`."""
    return OnnxGenerator(export_dir).generate(prompts, **options)
