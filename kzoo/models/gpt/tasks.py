"""GPT task models."""

import keras

from kzoo.models.backbone import Task


@keras.saving.register_keras_serializable(package="kzoo")
class GPTCausalLM(Task):
    """Next-token prediction with the tied token embedding as output projection.

    Inputs: the backbone's (`token_ids`, `padding_mask`). Output: logits
    `(b, s, vocabulary_size)`; position `i` predicts token `i + 1`. For `fit`, pass
    targets shifted left by one and `sample_weight` = the shifted padding mask.
    """

    default_learning_rate = 3e-4

    def __init__(self, backbone, **kwargs):
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
        }
        hidden = backbone(inputs)["sequence_output"]
        logits = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._store_config(backbone)

    def generate(self, inputs, **options):
        """Generates new tokens (or text) for `inputs`; see `kzoo.generate.generate`
        for the inputs, options (`strategy`, `max_new_tokens`, `num_beams`, ...) and
        the result."""
        from kzoo.generate import generate

        return generate(self, inputs, **options)
