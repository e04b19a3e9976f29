"""`kzoo models`: list the model presets with their family and parameter count."""


def register(commands):
    parser = commands.add_parser("models", help="list the model presets with their parameter counts")
    parser.set_defaults(run=run)


def run(args):
    from kzoo import models

    presets = models.list_presets()
    width = max(len(preset.name) for preset in presets)
    print(f"{'preset':{width}s} {'family':8s} {'parameters':>13s}  description")
    for preset in presets:
        count = preset.published_parameters
        if count is None:  # the sizes without a published count: counted from the config, nothing is built
            count = preset.config.parameter_count()
        print(f"{preset.name:{width}s} {preset.family:8s} {count:>13,d}  {preset.description}")
    return 0
