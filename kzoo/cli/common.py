"""What every subcommand shares: the one-line error message and the argparse value types."""

import argparse


def one_line(error):
    """An error's message as the one line a command prints: the lines of a longer message (e.g. a list of
    weight names after "...:") joined by "; "."""
    text = ""
    for line in filter(None, (line.strip() for line in str(error).splitlines())):
        text += (" " if text.endswith(":") else "; ") + line if text else line
    return text


def positive_int(text):
    """argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
