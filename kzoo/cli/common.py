"""What every subcommand shares: the one-line error message, the argparse value types, `--tokenizer` files."""

import argparse
import os

from kzoo.messages import one_line  # noqa: F401  (re-exported: every subcommand prints errors with it)


def positive_int(text):
    """argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_list(what):
    """argparse type: integers separated by spaces or commas ("5 6 7", "0,-1"); `what` names them in the error."""

    def parse(text):
        try:
            return [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} separated by spaces or commas, got {text!r}") from None

    return parse


def tokenizer_files(paths):
    """`{basename: path}` of a `--tokenizer` argument: files, or directories whose files are all taken."""
    files = {}
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                files[name] = os.path.join(path, name)
        else:
            files[os.path.basename(path)] = path
    return files
