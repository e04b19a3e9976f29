"""kzoo.train: configuration, strategies, optimizer, checkpoints and the training loop.

    config -> strategy (resolve_strategy) -> model built under strategy.scope()
           -> build_optimizer + model.compile -> Trainer(model, config, strategy, data fns).fit()

Recipes (recipes/*.py) wire these together with kzoo.data and kzoo.models; see
`kzoo.train.recipe.run_recipe`.
"""

from kzoo.train.checkpoint import CheckpointError, CheckpointManager
from kzoo.train.config import ConfigError, TrainConfig, parse_command_line, write_resolved
from kzoo.train.loop import Trainer, TrainingDiverged
from kzoo.train.optimization import PreReducedAdamW, WarmupDecay, build_optimizer
from kzoo.train.strategy import is_chief, resolve_strategy

__all__ = [
    "CheckpointError", "CheckpointManager", "ConfigError", "PreReducedAdamW", "TrainConfig", "Trainer",
    "TrainingDiverged", "WarmupDecay", "build_optimizer", "is_chief", "parse_command_line", "resolve_strategy",
    "write_resolved",
]
