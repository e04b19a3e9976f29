"""Seq2seq task models."""

import keras

from kzoo.models.backbone import Task
from kzoo.models.seq2seq.backbone import INPUT_NAMES
from kzoo.models.seq2seq.decoding import Seq2SeqDecodingAdapter


@keras.saving.register_keras_serializable(package="kzoo")
class Seq2SeqLM(Task):
    """Conditional language model trained with teacher forcing.

    Inputs: the backbone's four. `decoder_token_ids` are the targets shifted right
    (starting with the decoder start token). Output: logits `(b, s, vocabulary_size)`
    predicting the unshifted targets; pass `sample_weight` = target padding mask.
    """

    default_learning_rate = 3e-4

    def __init__(self, backbone, **kwargs):
        inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in INPUT_NAMES}
        hidden = backbone(inputs)["decoder_sequence_output"]
        super().__init__(inputs=inputs, outputs=backbone.token_logits(hidden), **kwargs)
        self._store_config(backbone)

    def generate(self, inputs, **options):
        """Generates new tokens (or text) for `inputs`; see `kzoo.generate.generate`
        for the inputs, options (`strategy`, `max_new_tokens`, `num_beams`, ...) and
        the result."""
        from kzoo.generate import generate

        return generate(self, inputs, **options)

    def decoding_adapter(self):
        """How `kzoo.generate` runs this model: a `kzoo.models.seq2seq.decoding.Seq2SeqDecodingAdapter`."""
        return Seq2SeqDecodingAdapter(self)
