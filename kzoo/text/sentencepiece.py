"""SentencePiece tokenizers (T5, Llama-2, XLM-R) as TensorFlow ops (`tensorflow_text.SentencepieceTokenizer`).

Reference: Kudo & Richardson 2018 (SentencePiece), Raffel et al. 2020 (T5), Conneau et al. 2020 (XLM-R). The
`spiece.model` / `tokenizer.model` / `sentencepiece.bpe.model` file is the serialized SentencePiece ModelProto;
normalization (NFKC by default) and segmentation are the sentencepiece library's own, run inside a TensorFlow op, so
ids equal `sentencepiece.SentencePieceProcessor.encode`. Text spelling a control piece ("</s>") is tokenized as
plain text, like sentencepiece itself.

XLM-R renumbers the pieces the fairseq way (`XLMRobertaTokenizer`): `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, every
other piece one above its SentencePiece id, and `<mask>` last.
"""

import hashlib
import os

import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.base import Tokenizer

_SPECIAL_PIECES = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "bos": "<s>"}
FAIRSEQ_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>")  # XLM-R ids 0..3


def model_op(model, out_type=tf.int32):
    """`tensorflow_text.SentencepieceTokenizer` of the serialized `model`, named after the model's hash.

    tensorflow-text's model resource is owned by a cached kernel: two unnamed SentencePiece models in one SavedModel
    come back from a reload as the same model (the second reads the first's pieces). The name tells them apart.
    """
    name = "sentencepiece_" + hashlib.sha256(model).hexdigest()[:16]
    return tf_text.SentencepieceTokenizer(model=model, out_type=out_type, name=name)


def read_model(path):
    """Reads a `spiece.model`; raises ValueError naming the file and the fix."""
    if not os.path.isfile(path):
        raise ValueError(f"SentencePiece model file {path!r} does not exist; pass the spiece.model of the checkpoint.")
    with open(path, "rb") as file:
        model = file.read()
    if not model:
        raise ValueError(f"SentencePiece model file {path!r} is empty; pass the spiece.model of the checkpoint.")
    return model


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (T5) tokenizer in TensorFlow ops.

    Args:
        model: bytes of a serialized SentencePiece model (`spiece.model`).
        add_eos: bool, `encode` appends `</s>` like T5 (default True).
        add_bos: bool, `encode` starts with `<s>` like Llama-2 (default False).
        prefix_space: "always" (sentencepiece's own: a "▁" is put before every text) or "first" (Hugging Face's
            Llama tokenizer, `legacy=False`, the default in transformers 5: a text that already starts with a space
            gets no extra "▁", so " x" is "▁x" rather than "▁▁x").

    `special_token_ids` holds the pieces the model defines among `<pad>`, `</s>` (eos), `<unk>` and `<s>` (bos);
    `encode` pads with `<pad>` (0 in T5) or 0 when the model has none.

    Example:
        >>> tokenizer = SentencePieceTokenizer.from_files("spiece.model")
        >>> tokenizer.encode(["translate English to German: Hello"], sequence_length=16)   # ends with </s> (id 1)
    """

    def __init__(self, model, add_eos=True, name=None, source="the SentencePiece model", add_bos=False,
                 prefix_space="always"):
        super().__init__(name=name)
        self._model = model
        try:
            self._sentencepiece = model_op(model)
            size = int(self._sentencepiece.vocab_size())
        except (tf.errors.InvalidArgumentError, tf.errors.InternalError) as error:
            raise ValueError(
                f"{source} is not a valid SentencePiece model ({error.message.strip()}); pass the spiece.model "
                "of the checkpoint or train one with kzoo.text.train_sentencepiece."
            ) from None
        self._pieces = [p.decode("utf-8") for p in self._sentencepiece.id_to_string(tf.range(size)).numpy()]
        self._ids = {piece: i for i, piece in enumerate(self._pieces)}
        self.special_token_ids = {k: self._ids[p] for k, p in _SPECIAL_PIECES.items() if p in self._ids}
        self.pad_id = self.special_token_ids.get("pad", 0)
        if add_eos and "eos" not in self.special_token_ids:
            raise ValueError(f"add_eos=True needs a '</s>' piece; {source} has none.")
        if add_bos and "bos" not in self.special_token_ids:
            raise ValueError(f"add_bos=True needs a '<s>' piece; {source} has none.")
        self.end_ids = (self.special_token_ids["eos"],) if add_eos else ()
        self.start_ids = (self.special_token_ids["bos"],) if add_bos else ()
        if prefix_space not in ("always", "first"):
            raise ValueError(f"prefix_space must be 'always' or 'first', got {prefix_space!r}.")
        self.prefix_space = prefix_space
        # Hugging Face's ids of a text that is one space ("first": "▁", or its bytes where it is no piece).
        space = [self._ids["▁"]] if "▁" in self._ids else [self._ids.get(f"<0x{b:02X}>", 0) for b in "▁".encode()]
        self._space_ids = tuple(space)

    @classmethod
    def from_files(cls, spiece_model, add_eos=True, add_bos=False, prefix_space="always"):
        """Loads a SentencePiece `spiece.model` (T5, mT5, ...) or `tokenizer.model` (Llama-2: add_bos=True,
        add_eos=False, prefix_space="first" as transformers 5 reads it)."""
        path = os.fspath(spiece_model)
        return cls(read_model(path), add_eos=add_eos, add_bos=add_bos, source=f"SentencePiece model file {path!r}",
                   prefix_space=prefix_space)

    @property
    def vocabulary_size(self):
        return len(self._pieces)

    def id_to_token(self, id):
        if not 0 <= int(id) < len(self._pieces):
            raise ValueError(f"id {id} is outside the vocabulary [0, {len(self._pieces) - 1}].")
        return self._pieces[int(id)]

    def token_to_id(self, token):
        if token not in self._ids:
            raise ValueError(f"token {token!r} is not in the vocabulary.")
        return self._ids[token]

    def _tokenize(self, strings):
        if self.prefix_space == "always":
            return self._run(lambda sentencepiece: sentencepiece.tokenize(strings))
        # "first": sentencepiece's "▁" stands for the text's own leading space, which is dropped; a text that is
        # one space becomes "▁" (sentencepiece would give nothing for the empty rest).
        single = tf.equal(strings, " ")
        rest = tf.where(single, "", tf.strings.regex_replace(strings, r"(?s)^ (.)", r"\1"))
        ids = self._run(lambda sentencepiece: sentencepiece.tokenize(rest))
        single = single[:, tf.newaxis]
        space = tf.ragged.boolean_mask(tf.tile(tf.constant([self._space_ids], tf.int32), [tf.size(strings), 1]),
                                       tf.tile(single, [1, len(self._space_ids)]))
        return tf.concat([ids, space], axis=1)

    def _detokenize(self, ids):
        return self._run(lambda sentencepiece: sentencepiece.detokenize(ids))

    def _run(self, op):
        """Runs `op(tensorflow_text tokenizer)`.

        tensorflow-text's SentencePiece model is owned by a cached kernel, so `keras.backend.clear_session()`
        (which clears TensorFlow's kernel cache) deletes it. Eagerly, kzoo then rebuilds it from the model bytes
        and runs `op` again; when tracing a graph, it checks (eagerly) that the model is alive before capturing it.
        A graph traced before a `clear_session()` cannot be repaired: trace it again.
        """
        if not tf.executing_eagerly():
            with tf.init_scope():
                self._run(lambda sentencepiece: sentencepiece.vocab_size())
            return op(self._sentencepiece)
        try:
            return op(self._sentencepiece)
        except tf.errors.NotFoundError:
            self._sentencepiece = model_op(self._model)
            return op(self._sentencepiece)


class XLMRobertaTokenizer(SentencePieceTokenizer):
    """XLM-R's tokenizer: a SentencePiece model, ids renumbered the fairseq way, RoBERTa's framing.

    Args:
        model: bytes of XLM-R's `sentencepiece.bpe.model`.

    Ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, SentencePiece piece i (i >= 3) is i + 1, `<mask>` is the last id
    (`vocabulary_size - 1`). `special_token_ids` maps bos/cls to `<s>`, eos/sep to `</s>`, pad, unk and mask, the
    roles kzoo's BERT pipelines and tasks read. `encode` gives `<s> A </s>`, `encode_pair` `<s> A </s></s> B </s>`
    (one segment: `segment_ids` all 0), padded with `<pad>`. `detokenize` drops the special ids.
    """

    def __init__(self, model, name=None, source="the SentencePiece model"):
        super().__init__(model, add_eos=False, name=name, source=source)
        pieces = self._pieces
        if len(pieces) < 4 or [pieces[0], pieces[1], pieces[2]] != ["<unk>", "<s>", "</s>"]:
            raise ValueError(f"{source} does not start with the pieces <unk>, <s>, </s> that XLM-R's fairseq ids "
                             f"assume (it starts with {pieces[:3]}); pass XLM-R's sentencepiece.bpe.model.")
        size = len(pieces)
        self._pieces = list(FAIRSEQ_SPECIAL) + pieces[3:] + ["<mask>"]  # id -> token, size + 2 ids
        self._ids = {piece: i for i, piece in enumerate(self._pieces)}
        # SentencePiece id -> fairseq id, and back (special ids -> <s>, a control piece that decodes to "").
        self._to_ids = tf.constant([3, 0, 2] + list(range(4, size + 1)), tf.int32)
        self._from_ids = tf.constant([1, 1, 1, 0] + list(range(3, size)) + [1], tf.int32)
        self.special_token_ids = {"bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3, "mask": size + 1}
        self.pad_id = 1
        self.start_ids, self.end_ids, self.pair_start_ids = (0,), (2,), (2,)
        self.pair_segment_ids = False

    @classmethod
    def from_files(cls, sentencepiece_model):
        """Loads XLM-R's `sentencepiece.bpe.model`."""
        path = os.fspath(sentencepiece_model)
        return cls(read_model(path), source=f"SentencePiece model file {path!r}")

    def _tokenize(self, strings):
        # Hugging Face's XLM-R splits words at every Unicode White_Space character after normalizing (its
        # WhitespaceSplit); XLM-R's normalization (nmt_nfkc) turns them all into spaces but U+0085 (NEL).
        strings = tf.strings.regex_replace(strings, r"\x{85}", " ")
        ids = super()._tokenize(strings)
        return ids.with_flat_values(tf.gather(self._to_ids, ids.flat_values))

    def _detokenize(self, ids):
        inside = (ids.flat_values >= 0) & (ids.flat_values < len(self._pieces))
        pieces = tf.gather(self._from_ids, tf.where(inside, ids.flat_values, 1))
        return super()._detokenize(ids.with_flat_values(tf.where(inside, pieces, ids.flat_values)))

    def encode_pair(self, strings_a, strings_b, sequence_length=None, *, max_length=None):
        """Two texts -> `<s> a </s></s> b </s>` rows; see `kzoo.text.packing.pack`."""
        return self._encode_pair(strings_a, strings_b, sequence_length, max_length)
