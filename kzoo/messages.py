"""Error messages as the one line a kzoo command prints (a library-level helper: no CLI or backend imports)."""

import contextlib
import sys
import warnings


def one_line(message):
    """`message` (any object; an exception's text) as one line: the lines of a longer message (e.g. a list of
    weight names after "...:") joined by "; ", or by a space after a line that ends with a colon."""
    text = ""
    for line in filter(None, (line.strip() for line in str(message).splitlines())):
        text += (" " if text.endswith(":") else "; ") + line if text else line
    return text


@contextlib.contextmanager
def warnings_as_lines(command, category):
    """Prints each `category` warning raised inside the block as one line, `<command>: warning: <message>`, on
    stderr (also when the block then fails); other warnings are shown as usual.

    For what a command tells its user without stopping: a renamed config key (FutureWarning), a checkpoint part the
    import leaves out (UserWarning)."""
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", category)
            yield
    finally:  # the usual warning machinery is back in place here
        for warning in caught:
            if issubclass(warning.category, category):
                print(f"{command}: warning: {one_line(warning.message)}", file=sys.stderr)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
