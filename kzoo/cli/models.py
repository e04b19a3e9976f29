"""`kzoo models`: list the model presets with their family and parameter count."""


def register(commands):
    parser = commands.add_parser("models", help="list the model presets with their parameter counts")
    parser.set_defaults(run=run)


def run(args):
    from kzoo import models

    print(f"{'preset':18s} {'family':8s} {'parameters':>13s}  description")
    for preset in models.list_presets():
        count = preset.published_parameters
        if count is None:  # the sizes without a published count: counted from the config, nothing is built
            count = preset.config.parameter_count()
        print(f"{preset.name:18s} {preset.family:8s} {count:>13,d}  {preset.description}")
    return 0
