"""The config dataclass base: one per model family, fields = backbone arguments."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and options of one model family; presets are named instances.

    Its fields are exactly the backbone's constructor arguments, so
    `Backbone(**config.to_dict())` builds the model and Keras' own `get_config` /
    `from_config` round-trip it unchanged.
    """

    def to_dict(self):
        return dataclasses.asdict(self)

    def replace(self, **overrides):
        """A copy with some fields changed; unknown names raise with the valid list."""
        valid = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no field(s) {unknown}; valid fields are {valid}."
            )
        return dataclasses.replace(self, **overrides)
