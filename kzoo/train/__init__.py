"""kzoo.train: configuration, strategies, optimizer, checkpoints and the training loop, under TensorFlow or JAX.

    config -> strategy (resolve: a tf.distribute strategy, or a JaxDistribution under JAX)
           -> model built under strategy.scope()
           -> build_optimizer + model.compile -> Trainer(model, config, strategy, datasets).fit()

The Trainer is the same for both backends; the compiled steps are the backend's own
(`tf_steps`, `jax_steps`), and checkpoints are plain arrays either backend restores.

kzoo.train knows no data or text: recipes (recipes/*.py, run by `kzoo.recipes.run_recipe`) wire it
together with kzoo.data, kzoo.text and kzoo.models. The run directory's file names are `kzoo.run_directory`'s.
"""

import importlib

# Names are imported on first use (PEP 562), so that the modules that need only Keras
# (`config`, `optimization`, `checkpoint`, `jax_distribution`) load where TensorFlow is absent,
# e.g. a JAX-only GPU machine; `strategy`, `summaries` and `tf_steps` import TensorFlow.
_EXPORTS = {
    "CheckpointError": "checkpoint", "CheckpointManager": "checkpoint", "RunFolderError": "checkpoint",
    "ConfigError": "config", "TrainConfig": "config", "parse_command_line": "config", "write_resolved": "config",
    "Trainer": "loop", "TrainingDiverged": "loop",
    "PreReducedAdamW": "optimization", "WarmupDecay": "optimization", "build_optimizer": "optimization",
    "WorkerLost": "strategy", "is_chief": "strategy", "resolve": "strategy", "resolve_strategy": "strategy",
    "JaxDistribution": "jax_distribution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kzoo.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kzoo.train.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
