"""GPT task models."""

import keras
from keras import ops

from kzoo.models.backbone import Task
from kzoo.models.gpt.decoding import GPTDecodingAdapter
from kzoo.models.losses import projected_cross_entropy


@keras.saving.register_keras_serializable(package="kzoo")
class GPTCausalLM(Task):
    """Next-token prediction with the tied token embedding as output projection.

    Inputs: the backbone's (`token_ids`, `padding_mask`). Output: logits
    `(b, s, vocabulary_size)`; position `i` predicts token `i + 1`. For `fit`, pass
    targets shifted left by one and `sample_weight` = the shifted padding mask.

    Args:
        backbone: a `GPTBackbone`.
        fused_loss: bool. When True, training never forms the `(b, s, V)` logits: a
            training-mode call returns the backbone's hidden states `(b, s, d)`, and
            `compute_loss` projects them onto the vocabulary chunk by chunk
            (`kzoo.models.losses.projected_cross_entropy`), computing the loss, the
            gradients and the token accuracy in one pass. The loss equals the default
            loss (float32 softmax, weighted mean over `sample_weight`). Inference,
            evaluation, generation and exports still see logits. Only the default loss
            can be fused (`compile(loss="auto")`); metrics passed to `compile` are
            updated where logits exist (evaluation), while the built-in `accuracy`
            is counted in training too.
        loss_chunk_size: int, tokens per chunk of the fused loss; one chunk holds
            `loss_chunk_size x V` float32 logits (1024 x 50304: 206 MB).
    """

    default_learning_rate = 3e-4

    def __init__(self, backbone, fused_loss=False, loss_chunk_size=1024, **kwargs):
        if fused_loss and backbone.hidden_dim == backbone.vocabulary_size:
            raise ValueError(
                "GPTCausalLM(fused_loss=True) tells hidden states from logits by their width, but this backbone's "
                f"hidden_dim equals its vocabulary_size ({backbone.vocabulary_size}); use "
                "fused_loss=False."
            )
        if loss_chunk_size < 1:
            raise ValueError(f"GPTCausalLM: loss_chunk_size must be >= 1, got {loss_chunk_size}.")
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask"),
        }
        hidden = backbone(inputs)["sequence_output"]
        logits = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self._store_config(backbone, fused_loss=bool(fused_loss), loss_chunk_size=int(loss_chunk_size))
        # The fused loss counts its hits itself (there are no logits for a compiled metric to read).
        self.token_accuracy = keras.metrics.Mean(name="accuracy") if self.fused_loss else None

    def call(self, inputs, training=None, mask=None, **kwargs):
        if training and self.fused_loss:
            return self.backbone(inputs, training=training)["sequence_output"]  # (b, s, d): see `fused_loss`
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        if self.fused_loss and loss != "auto":
            raise ValueError(
                "GPTCausalLM(fused_loss=True) computes its own cross-entropy; compile it with loss='auto', or "
                "build the model with fused_loss=False to train on another loss."
            )
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def default_metrics(self):
        return [] if self.fused_loss else super().default_metrics()

    def _is_hidden(self, y_pred):
        return self.fused_loss and y_pred.shape[-1] == self.backbone.hidden_dim

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not self._is_hidden(y_pred):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        embedding = self.backbone.token_embedding  # the projection of `embedding(hidden, reverse=True)`
        hidden = y_pred * embedding.logits_scale if embedding.logits_scale != 1.0 else y_pred
        loss, accuracy, total_weight = projected_cross_entropy(
            hidden, embedding.reverse_kernel(), y, sample_weight, embedding.vocabulary_size,
            chunk_size=self.loss_chunk_size)
        self.token_accuracy.update_state(accuracy, sample_weight=total_weight)
        losses = [_scale_for_replicas(loss)] + [ops.sum(ops.cast(extra, "float32")) for extra in self.losses]
        return losses[0] if len(losses) == 1 else ops.sum(ops.stack(losses))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self._is_hidden(y_pred):  # a fused training pass: the loss already counted the hits
            compiled = self._compile_metrics
            if compiled is not None and not compiled.built:
                compiled.build(y, y_pred)  # creates them (structure only); logits will update them
            return self.get_metrics_result()
        if self.fused_loss:  # logits (evaluation): count the hits as the fused loss does
            hits = ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), ops.cast(y, "int32")), "float32")
            self.token_accuracy.update_state(hits, sample_weight=sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def generate(self, inputs, **options):
        """Generates new tokens (or text) for `inputs`; see `kzoo.generate.generate`
        for the inputs, options (`strategy`, `max_new_tokens`, `num_beams`, ...) and
        the result."""
        from kzoo.generate import generate

        return generate(self, inputs, **options)

    def decoding_adapter(self):
        """How `kzoo.generate` runs this model: a `kzoo.models.gpt.decoding.GPTDecodingAdapter`."""
        return GPTDecodingAdapter(self)


def _scale_for_replicas(loss):
    """Divides by the replicas in sync under a `tf.distribute` strategy, as Keras' own losses do, so that the
    per-replica gradients sum to the global batch's."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss
