"""T5's SentencePiece tokenizer as TensorFlow ops (`tensorflow_text.SentencepieceTokenizer`).

Reference: Kudo & Richardson 2018 (SentencePiece), Raffel et al. 2020 (T5). The `spiece.model` file is the
serialized SentencePiece ModelProto; normalization (NFKC by default) and segmentation are the sentencepiece
library's own, run inside a TensorFlow op, so ids equal `sentencepiece.SentencePieceProcessor.encode`.
Text spelling a control piece ("</s>") is tokenized as plain text, like sentencepiece itself.
"""

import os

import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.base import Tokenizer

_SPECIAL_PIECES = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "bos": "<s>"}


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

    `special_token_ids` holds the pieces the model defines among `<pad>`, `</s>` (eos), `<unk>` and `<s>` (bos);
    `encode` pads with `<pad>` (0 in T5) or 0 when the model has none.

    Example:
        >>> tokenizer = SentencePieceTokenizer.from_files("spiece.model")
        >>> tokenizer.encode(["translate English to German: Hello"], sequence_length=16)   # ends with </s> (id 1)
    """

    def __init__(self, model, add_eos=True, name=None, source="the SentencePiece model"):
        super().__init__(name=name)
        self._model = model
        try:
            self._sentencepiece = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)
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
        self.end_ids = (self.special_token_ids["eos"],) if add_eos else ()

    @classmethod
    def from_files(cls, spiece_model, add_eos=True):
        """Loads a SentencePiece `spiece.model` (T5, mT5, ...)."""
        path = os.fspath(spiece_model)
        return cls(read_model(path), add_eos=add_eos, source=f"SentencePiece model file {path!r}")

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
        return self._run(lambda sentencepiece: sentencepiece.tokenize(strings))

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
            self._sentencepiece = tf_text.SentencepieceTokenizer(model=self._model, out_type=tf.int32)
            return op(self._sentencepiece)
