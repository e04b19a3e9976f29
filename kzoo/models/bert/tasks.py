"""BERT task models: pretraining (MLM + NSP), classification, tagging, span QA.

Each takes a `BertBackbone`, adds a head, and has a default `compile()` with the
loss and metrics of its task, so any BERT checkpoint loads into any of them, the
variants' (RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA) included.
"""

import keras

from kzoo import layers
from kzoo.models.backbone import Task
from kzoo.models.config import dense_parameters, norm_parameters

BACKBONE_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _backbone_inputs():
    return {name: keras.Input((None,), dtype="int32", name=name) for name in BACKBONE_INPUTS}


def _initializer(backbone):
    """A new unseeded truncated normal for one head (each head hands every weight its own copy,
    `kzoo.layers.independent_initializer`)."""
    return keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)


def _pooled_output(backbone, task):
    """The backbone's `pooled_output`; a ValueError when it was built without a pooler."""
    if backbone.pooler is None:
        raise ValueError(
            f"{task} reads the pooled [CLS] output, but this BertBackbone has no pooler (use_pooler=False, e.g. "
            "DistilBERT, ELECTRA, or imported from a checkpoint saved without pooler weights, such as a "
            "BertForMaskedLM file). Pass next_sentence_prediction=False, or use a backbone with a pooler "
            "(BertBackbone(..., use_pooler=True) trains a new one)."
        )
    return "pooled_output"


def _positive_int_argument(task, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{task}: `{name}` must be a positive integer, got {value!r}.")
    return value


class _BertTask(Task):
    default_learning_rate = 5e-5


@keras.saving.register_keras_serializable(package="kzoo")
class BertPretrainer(_BertTask):
    """Masked-LM + next-sentence-prediction pretraining (BERT sec. 3.1).

    Inputs: the backbone's inputs plus `mask_positions` int `(b, p)`, the positions
    whose tokens were masked. Outputs: `mlm_logits` `(b, p, vocabulary_size)` (tied to
    the token embedding; the head's transform maps `hidden_dim` to the embedding width,
    which differs for ELECTRA-style backbones) and `nsp_logits` `(b, 2)` from the pooled output.
    Targets for `fit`: `{"mlm_logits": masked token ids (b, p), "nsp_logits": (b,)}`;
    pass `sample_weight={"mlm_logits": mask_weights}` so padded predictions count zero.
    The total loss is the sum of both cross-entropies.

    Args:
        backbone: a `BertBackbone` (with a pooler when `next_sentence_prediction`).
        next_sentence_prediction: bool; False builds the masked-LM head only (outputs
            `mlm_logits` alone): the model of a Hugging Face `BertForMaskedLM` file,
            which has no next-sentence head, and of the variants' masked-LM files
            (RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA's generator), pretrained without one.
    """

    default_learning_rate = 1e-4

    def __init__(self, backbone, next_sentence_prediction=True, **kwargs):
        if not isinstance(next_sentence_prediction, bool):
            raise ValueError(f"BertPretrainer: `next_sentence_prediction` must be true or false, got "
                             f"{next_sentence_prediction!r}.")
        pooled = _pooled_output(backbone, "BertPretrainer's next-sentence head") if next_sentence_prediction else None
        self.masked_lm_head = layers.MaskedLMHead(
            backbone.token_embedding,
            activation=backbone.activation,
            norm_epsilon=backbone.norm_epsilon,
            kernel_initializer=_initializer(backbone),
            dtype=backbone.dtype_policy,
            name="masked_lm_head",
        )
        self.next_sentence_head = None
        if next_sentence_prediction:
            self.next_sentence_head = layers.ClassificationHead(
                2, kernel_initializer=_initializer(backbone), dtype=backbone.dtype_policy, name="next_sentence_head"
            )
        inputs = _backbone_inputs()
        inputs["mask_positions"] = keras.Input((None,), dtype="int32", name="mask_positions")
        features = backbone({name: inputs[name] for name in BACKBONE_INPUTS})
        outputs = {
            "mlm_logits": self.masked_lm_head(features["sequence_output"], mask_positions=inputs["mask_positions"]),
        }
        if next_sentence_prediction:
            outputs["nsp_logits"] = self.next_sentence_head(features[pooled])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._store_config(backbone, next_sentence_prediction=next_sentence_prediction)

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        d, e = backbone_config.hidden_dim, backbone_config.embedding_width
        masked_lm = dense_parameters(d, e) + norm_parameters(e) + backbone_config.vocabulary_size  # + output bias
        next_sentence = dense_parameters(d, 2) if arguments.get("next_sentence_prediction", True) else 0
        return masked_lm + next_sentence

    @classmethod
    def head_projection_shapes(cls, backbone_config, arguments):
        d = backbone_config.hidden_dim
        # The output projection is the tied token embedding.
        shapes = {"masked_lm_head/transform": (d, backbone_config.embedding_width)}
        if arguments.get("next_sentence_prediction", True):
            shapes["next_sentence_head/logits"] = (d, 2)
        return shapes

    def default_loss(self):
        # The MLM loss is the mean over real masked positions (BERT's), not over all `p` slots.
        losses = {"mlm_logits": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight")}
        if self.next_sentence_prediction:
            losses["nsp_logits"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return losses

    def default_metrics(self):
        return {name: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] for name in self.default_loss()}


@keras.saving.register_keras_serializable(package="kzoo")
class BertClassifier(_BertTask):
    """Sequence (pair) classification from the [CLS] position.

    With a pooler in the backbone (BERT, RoBERTa): dropout and a projection of the pooled
    output. Without one (DistilBERT, ELECTRA, a `BertForMaskedLM` file): the head reads the
    [CLS] vector of `sequence_output` itself, through dropout, a tanh dense layer of
    `hidden_dim` units and dropout before the projection (the head RoBERTa, DistilBERT and
    ELECTRA fine-tune with); that dense layer is part of the new head, trained from scratch
    with it, never a pretrained part filled at random.

    Output: logits `(b, num_classes)`. Args: `backbone`, `num_classes`, `dropout`
    (before each projection, 0.1 as in BERT).
    """

    def __init__(self, backbone, num_classes, dropout=0.1, **kwargs):
        has_pooler = backbone.pooler is not None
        self.classification_head = layers.ClassificationHead(
            num_classes, dropout=dropout, intermediate_dim=None if has_pooler else backbone.hidden_dim,
            kernel_initializer=_initializer(backbone), dtype=backbone.dtype_policy, name="classification_head",
        )
        inputs = _backbone_inputs()
        features = backbone(inputs)
        first = features["pooled_output"] if has_pooler else features["sequence_output"][:, 0, :]  # (b, d)
        logits = self.classification_head(first)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._store_config(backbone, num_classes=num_classes, dropout=dropout)

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        classes = _positive_int_argument(cls.__name__, "num_classes", arguments.get("num_classes"))
        d = backbone_config.hidden_dim
        return dense_parameters(d, classes) + (0 if backbone_config.use_pooler else dense_parameters(d, d))

    @classmethod
    def head_projection_shapes(cls, backbone_config, arguments):
        classes = _positive_int_argument(cls.__name__, "num_classes", arguments.get("num_classes"))
        d = backbone_config.hidden_dim
        shapes = {"classification_head/logits": (d, classes)}
        if not backbone_config.use_pooler:
            shapes["classification_head/intermediate"] = (d, d)
        return shapes


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

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        classes = _positive_int_argument(cls.__name__, "num_classes", arguments.get("num_classes"))
        return dense_parameters(backbone_config.hidden_dim, classes)

    @classmethod
    def head_projection_shapes(cls, backbone_config, arguments):
        classes = _positive_int_argument(cls.__name__, "num_classes", arguments.get("num_classes"))
        return {"token_classification_head/logits": (backbone_config.hidden_dim, classes)}


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

    @classmethod
    def head_parameter_count(cls, backbone_config, arguments):
        return dense_parameters(backbone_config.hidden_dim, 2)

    @classmethod
    def head_projection_shapes(cls, backbone_config, arguments):
        return {"span_head/span_logits": (backbone_config.hidden_dim, 2)}

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
