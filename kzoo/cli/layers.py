"""`kzoo layers`: list the layers of `kzoo.layers` with the first line of their docstrings."""


def register(commands):
    parser = commands.add_parser("layers", help="list the layers of kzoo.layers")
    parser.set_defaults(run=run)


def run(args):
    import kzoo.layers

    for name in kzoo.layers.__all__:
        item = getattr(kzoo.layers, name)
        summary = (item.__doc__ or "").strip().splitlines()[0]
        print(f"{name:32s} {summary}")
    return 0
