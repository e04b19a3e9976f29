"""BERT task models: pretraining (MLM + NSP), classification, tagging, span QA.

Each takes a `BertBackbone`, adds a head, and has a default `compile()` with the
loss and metrics of its task, so any BERT checkpoint loads into any of them.
"""

import keras

from kzoo import layers
from kzoo.models.backbone import Task

BACKBONE_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _backbone_inputs():
    return {name: keras.Input((None,), dtype="int32", name=name) for name in BACKBONE_INPUTS}


def _initializer(backbone):
    return keras.initializers.TruncatedNormal(stddev=backbone.get_config()["initializer_range"])


class _BertTask(Task):
    default_learning_rate = 5e-5


@keras.saving.register_keras_serializable(package="kzoo")
class BertPretrainer(_BertTask):
    """Masked-LM + next-sentence-prediction pretraining (BERT sec. 3.1).

    Inputs: the backbone's inputs plus `mask_positions` int `(b, p)`, the positions
    whose tokens were masked. Outputs: `mlm_logits` `(b, p, vocabulary_size)` (tied to
    the token embedding) and `nsp_logits` `(b, 2)` from the pooled output.
    Targets for `fit`: `{"mlm_logits": masked token ids (b, p), "nsp_logits": (b,)}`;
    pass `sample_weight={"mlm_logits": mask_weights}` so padded predictions count zero.
    The total loss is the sum of both cross-entropies.
    """

    default_learning_rate = 1e-4

    def __init__(self, backbone, **kwargs):
        initializer = _initializer(backbone)
        self.masked_lm_head = layers.MaskedLMHead(
            backbone.token_embedding,
            activation=backbone.get_config()["activation"],
            norm_epsilon=backbone.get_config()["norm_epsilon"],
            kernel_initializer=initializer,
            dtype=backbone.dtype_policy,
            name="masked_lm_head",
        )
        self.next_sentence_head = layers.ClassificationHead(
            2, kernel_initializer=initializer, dtype=backbone.dtype_policy, name="next_sentence_head"
        )
        inputs = _backbone_inputs()
        inputs["mask_positions"] = keras.Input((None,), dtype="int32", name="mask_positions")
        features = backbone({name: inputs[name] for name in BACKBONE_INPUTS})
        outputs = {
            "mlm_logits": self.masked_lm_head(features["sequence_output"], mask_positions=inputs["mask_positions"]),
            "nsp_logits": self.next_sentence_head(features["pooled_output"]),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._store_config(backbone)

    def default_loss(self):
        # The MLM loss is the mean over real masked positions (BERT's), not over all `p` slots.
        return {
            "mlm_logits": keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"),
            "nsp_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }

    def default_metrics(self):
        return {
            "mlm_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "nsp_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        }


@keras.saving.register_keras_serializable(package="kzoo")
class BertClassifier(_BertTask):
    """Sequence (pair) classification from the pooled [CLS] output.

    Output: logits `(b, num_classes)`. Args: `backbone`, `num_classes`, `dropout`
    (before the classifier, 0.1 as in BERT).
    """

    def __init__(self, backbone, num_classes, dropout=0.1, **kwargs):
        self.classification_head = layers.ClassificationHead(
            num_classes, dropout=dropout, kernel_initializer=_initializer(backbone),
            dtype=backbone.dtype_policy, name="classification_head",
        )
        inputs = _backbone_inputs()
        logits = self.classification_head(backbone(inputs)["pooled_output"])
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._store_config(backbone, num_classes=num_classes, dropout=dropout)


@keras.saving.register_keras_serializable(package="kzoo")
class BertTokenClassifier(_BertTask):
    """Per-token classification (NER, POS tagging).

    Output: logits `(b, s, num_classes)`. Pass `sample_weight` (e.g. the padding mask
    or a first-subword mask) so ignored tokens do not count in the loss.
    """

    def __init__(self, backbone, num_classes, dropout=0.1, **kwargs):
        self.token_classification_head = layers.TokenClassificationHead(
            num_classes, dropout=dropout, kernel_initializer=_initializer(backbone),
            dtype=backbone.dtype_policy, name="token_classification_head",
        )
        inputs = _backbone_inputs()
        logits = self.token_classification_head(backbone(inputs)["sequence_output"])
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._store_config(backbone, num_classes=num_classes, dropout=dropout)



@keras.saving.register_keras_serializable(package="kzoo")
class BertSpanQA(_BertTask):
    """Extractive question answering: start and end logits per token (SQuAD).

    Outputs: `start_logits`, `end_logits`, each float32 `(b, s)`, padding positions
    set very negative. Targets: start and end token indices `(b,)` each.
    """

    def __init__(self, backbone, **kwargs):
        self.span_head = layers.SpanHead(
            kernel_initializer=_initializer(backbone), dtype=backbone.dtype_policy, name="span_head"
        )
        inputs = _backbone_inputs()
        start, end = self.span_head(backbone(inputs)["sequence_output"], padding_mask=inputs["padding_mask"])
        super().__init__(inputs=inputs, outputs={"start_logits": start, "end_logits": end}, **kwargs)
        self._store_config(backbone)

    def default_loss(self):
        return {
            "start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }

    def default_metrics(self):
        return {
            "start_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "end_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        }
