"""Optimizer and learning-rate schedule for kzoo training.

- `WarmupDecay`: linear warmup from 0 to the peak over `warmup_steps`, then linear or
  cosine decay (or constant) to `end_ratio * peak` at `total_steps`; a serializable
  `keras.optimizers.schedules.LearningRateSchedule` driven by the optimizer's own step,
  so a restored optimizer continues the schedule exactly.
- `build_optimizer`: AdamW with weight decay on matrices only (BERT/GPT practice: no
  decay on biases and normalization scales, i.e. every 1-D variable), global-norm
  clipping, gradient accumulation, and dynamic loss scaling under `mixed_float16`.

The kzoo train step sums gradients across replicas itself, before clipping and before
measuring their norm (so both act on the global gradient, as on one device); the
optimizer here is told not to sum them again (`PreReducedAdamW`).
"""

import math

import keras

from kzoo.train.config import TrainConfig


@keras.saving.register_keras_serializable(package="kzoo")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup then decay. `step` counts optimizer updates (0-based)."""

    def __init__(self, peak, total_steps, warmup_steps=0, decay="linear", end_ratio=0.0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.end_ratio = float(end_ratio)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0  # the first update uses the first warmup value
        warmup = keras.ops.minimum(step / max(self.warmup_steps, 1), 1.0)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == "linear":
            shape = 1.0 - progress
        elif self.decay == "cosine":
            shape = 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        else:
            shape = keras.ops.ones_like(progress)
        decayed = self.end_ratio + (1.0 - self.end_ratio) * shape
        in_warmup = step <= self.warmup_steps
        return self.peak * keras.ops.where(in_warmup, warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "decay": self.decay, "end_ratio": self.end_ratio}


@keras.saving.register_keras_serializable(package="kzoo")
class PreReducedAdamW(keras.optimizers.AdamW):
    """AdamW for gradients already summed across replicas (by the kzoo train step).

    Keras' TensorFlow optimizer all-reduces gradients inside `apply`; the kzoo step does
    it earlier so that clipping and the logged gradient norm see the global gradient.
    Outside a distribution strategy this is exactly `keras.optimizers.AdamW`.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def build_optimizer(config: TrainConfig, trainable_variables):
    """The AdamW (+ loss scaling) optimizer a `TrainConfig` describes, built for `trainable_variables`."""
    # Keras evaluates the schedule at its micro-step counter, so steps here are train steps.
    schedule = WarmupDecay(
        config.learning_rate, total_steps=config.steps, warmup_steps=config.warmup_steps,
        decay=config.decay, end_ratio=config.end_learning_rate_ratio,
    )
    optimizer = PreReducedAdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay or None,
        beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        global_clipnorm=config.clip_norm or None,
        gradient_accumulation_steps=(
            config.gradient_accumulation_steps if config.gradient_accumulation_steps > 1 else None
        ),
    )
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in trainable_variables if len(v.shape) < 2])
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(trainable_variables)
    return optimizer


def loss_scale(optimizer):
    """The current dynamic loss scale (1.0 without loss scaling)."""
    scale = getattr(optimizer, "dynamic_scale", None)
    return 1.0 if scale is None else float(keras.ops.convert_to_numpy(scale))
