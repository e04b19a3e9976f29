"""Base classes shared by every kzoo model: backbones and tasks.

A backbone maps named inputs (`token_ids`, `padding_mask`, ...) to hidden states; a
task adds a head, a loss and a default `compile()`. Both are functional Keras models
whose `get_config` holds the constructor arguments (not the graph), so a `.keras` file
rebuilds them through their constructors and weight ties survive a reload.
"""

import keras


class Backbone(keras.Model):
    """A functional model whose config is its constructor arguments.

    Subclasses create their layers, then call `self._forward(inputs)` on
    `keras.Input`s to wire the graph, then `super().__init__(inputs, outputs)`.
    `_forward` is reused to compute attention scores on demand
    (`attention_scores`), so inspection costs nothing when unused.
    """

    def _store_config(self, **arguments):
        self._constructor_arguments = dict(arguments)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **self._constructor_arguments,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "dtype" in config and isinstance(config["dtype"], dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    def attention_scores(self, inputs):
        """Runs the backbone on `inputs` (a dict like `self.input`) and returns the
        attention probabilities: a dict of lists with one `(b, h, s, t)` array per layer.
        """
        inputs = {name: keras.ops.convert_to_tensor(value) for name, value in inputs.items()}
        return self._forward(inputs, return_attention_scores=True)["attention_scores"]

    def count_params_by_layer(self):
        """`{layer name: parameter count}` for the top-level layers (for reports)."""
        return {layer.name: layer.count_params() for layer in self.layers if layer.weights}


class Task(keras.Model):
    """A backbone plus a head; `get_config` nests the serialized backbone.

    `compile()` with no arguments uses AdamW at `default_learning_rate` and the
    task's `default_loss()` / `default_metrics()`; anything passed replaces them.
    """

    default_learning_rate = 5e-5

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(self.default_learning_rate, weight_decay=0.01)
        if loss == "auto":
            loss = self.default_loss()
        if metrics == "auto":
            # As weighted metrics: Keras' plain `metrics` ignore sample weights, so they would also score
            # padded MLM slots and the sub-tokens a tagging task weights 0.
            metrics = None
            kwargs.setdefault("weighted_metrics", self.default_metrics())
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def default_loss(self):
        # The mean over weighted positions: the kzoo.data pipelines pass target masks as sample weights, and
        # Keras' default reduction would divide by every position, padding included.
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def _store_config(self, backbone, **arguments):
        self._constructor_arguments = dict(arguments)
        self.backbone = backbone

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            **self._constructor_arguments,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
