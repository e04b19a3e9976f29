"""Seq2seq task models."""

import keras
from keras import ops

from kzoo.models.backbone import Task
from kzoo.models.seq2seq.backbone import INPUT_NAMES
from kzoo.models.seq2seq.decoding import Seq2SeqDecodingAdapter


@keras.saving.register_keras_serializable(package="kzoo")
class LogitsBias(keras.layers.Layer):
    """A learned `(V,)` bias added to vocabulary logits `(..., V)` (zeros at first).

    The `final_logits_bias` of Hugging Face's BART, mBART and Marian LM classes: Marian
    (OPUS-MT) checkpoints carry the output bias of the original Marian models there.

    Args:
        vocabulary_size: int, V.
    """

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int) or vocabulary_size < 1:
            raise ValueError(f"LogitsBias '{self.name}': `vocabulary_size` must be a positive int, got "
                             f"{vocabulary_size!r}.")
        self.vocabulary_size = vocabulary_size

    def build(self, inputs_shape):
        self.bias = self.add_weight(name="bias", shape=(self.vocabulary_size,), initializer="zeros")
        self.built = True

    def call(self, logits):
        """`logits` `(..., V)` -> `logits + bias`, same shape, in the compute dtype."""
        return logits + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


@keras.saving.register_keras_serializable(package="kzoo")
class Seq2SeqLM(Task):
    """Conditional language model trained with teacher forcing.

    Inputs: the backbone's four. `decoder_token_ids` are the targets shifted right
    (starting with the decoder start token). Output: logits `(b, s, vocabulary_size)`
    predicting the unshifted targets; pass `sample_weight` = target padding mask.

    Args:
        backbone: a `Seq2SeqBackbone`.
        logits_bias: bool, add a learned `(V,)` bias to the logits (`LogitsBias`, the
            `final_logits_bias` of Marian checkpoints). It is the head's, so presets (backbone
            counts) leave it out, as transformers' `num_parameters()` leaves out that buffer.
    """

    default_learning_rate = 3e-4

    def __init__(self, backbone, logits_bias=False, **kwargs):
        if not isinstance(logits_bias, bool):
            raise ValueError(f"Seq2SeqLM: `logits_bias` must be true or false, got {logits_bias!r}.")
        self.logits_bias_layer = None
        if logits_bias:
            self.logits_bias_layer = LogitsBias(backbone.vocabulary_size, dtype=backbone.dtype_policy,
                                                name="logits_bias")
        inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in INPUT_NAMES}
        hidden = backbone(inputs)["decoder_sequence_output"]
        super().__init__(inputs=inputs, outputs=self.token_logits(hidden, backbone), **kwargs)
        self._store_config(backbone, logits_bias=logits_bias)

    def token_logits(self, decoder_hidden, backbone=None):
        """Vocabulary logits `(b, s, V)` from decoder states `(b, s, d)`: the backbone's
        projection plus the logits bias when the model has one."""
        logits = (backbone or self.backbone).token_logits(decoder_hidden)
        if self.logits_bias_layer is not None:
            logits = self.logits_bias_layer(logits)
        return logits

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        return backbone_config.vocabulary_size if arguments.get("logits_bias", False) else 0

    def generate(self, inputs, **options):
        """Generates new tokens (or text) for `inputs`; see `kzoo.generate.generate`
        for the inputs, options (`strategy`, `max_new_tokens`, `num_beams`, ...) and
        the result."""
        from kzoo.generate import generate

        return generate(self, inputs, **options)

    def decoding_adapter(self):
        """How `kzoo.generate` runs this model: a `kzoo.models.seq2seq.decoding.Seq2SeqDecodingAdapter`."""
        return Seq2SeqDecodingAdapter(self)
