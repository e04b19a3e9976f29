"""What every subcommand shares: the one-line error message and the argparse value types."""

import argparse

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
