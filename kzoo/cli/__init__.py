"""The `kzoo` command line: one module per subcommand, each a thin wrapper over the library.

Each subcommand module has `register(commands)`, which adds its parser, and `run(args)`, which imports the
library, calls it, prints and returns the exit status (2: a fixable input, named in one line on stderr).
Building the parser imports neither TensorFlow nor Keras, so `kzoo --help` and `kzoo --version` answer at once;
`kzoo.cli.quiet` keeps TensorFlow's start-up notices off the console when a command runs.
"""

import argparse

from kzoo.cli import attention, convert, evaluate, export, generate, layers, models, quantize, smoke, train, vocab
from kzoo.cli.common import one_line
from kzoo.cli.quiet import quiet_start

__all__ = ["build_parser", "main", "one_line"]


def _version():
    from importlib import metadata

    try:
        return metadata.version("kzoo")
    except metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
        from kzoo import __version__

        return __version__


def build_parser():
    parser = argparse.ArgumentParser(prog="kzoo", description="kzoo: Transformer model zoo for TensorFlow/Keras.")
    parser.add_argument("--version", action="version", version=f"kzoo {_version()}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up notices")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (smoke, models, convert, vocab, train, evaluate, generate, attention, quantize, export, layers):
        module.register(commands)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    quiet_start(verbose=args.verbose)
    return args.run(args)
