"""Error messages as the one line a kzoo command prints (a library-level helper: no CLI or backend imports)."""


def one_line(message):
    """`message` (any object; an exception's text) as one line: the lines of a longer message (e.g. a list of
    weight names after "...:") joined by "; ", or by a space after a line that ends with a colon."""
    text = ""
    for line in filter(None, (line.strip() for line in str(message).splitlines())):
        text += (" " if text.endswith(":") else "; ") + line if text else line
    return text
