"""The lines of a text file as text: a line that is not UTF-8 text is skipped and counted, never a traceback.

One rule for every reader of text files, the `kzoo.data` readers and the vocabulary trainers alike:

- a line is not UTF-8 text if it does not decode as UTF-8 or holds a NUL byte (binary data, UTF-16);
- such a line is skipped and counted per file in a `LineReport`
  (`report.messages()` says "skipped 3 of 120 lines that are not UTF-8 text in x.txt");
- a file where most lines are not UTF-8 text (an image, latin-1 text) raises `ValueError` naming the file
  and the fix; `strict_utf8=True` raises on the first such line instead, naming file and line;
- an empty file raises `ValueError` naming it.
"""

import dataclasses
import os

# A file is refused (not skipped line by line) when more than this share of its lines are not UTF-8 text.
MOSTLY_UNDECODABLE = 0.5


@dataclasses.dataclass
class LineReport:
    """The lines skipped because they are not UTF-8 text.

    Attributes:
        invalid_utf8: lines skipped because they are not UTF-8 text (all files).
        invalid_by_file: `{path: (lines not UTF-8 text, lines)}` for files with any.
    """

    invalid_utf8: int = 0
    invalid_by_file: dict = dataclasses.field(default_factory=dict)

    def merge(self, other):
        """Adds the counts of `other` (a report of the same class) to this one; returns self."""
        for field in dataclasses.fields(self):
            if field.name == "invalid_by_file":
                self.invalid_by_file.update(other.invalid_by_file)
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self

    def messages(self):
        """What was skipped, a line per file: "skipped 3 of 120 lines that are not UTF-8 text in x.txt", ..."""
        return [
            f"skipped {bad} of {total} lines that are not UTF-8 text in {path}"
            for path, (bad, total) in self.invalid_by_file.items()
        ]


def file_lines(path, report, strict_utf8):
    """`[(line_number, text, ok)]` for every line of `path`, newline stripped; `ok` False: not UTF-8 text
    (`text` is then the line decoded with U+FFFD replacements, for a parser that must see its quotes).

    Lines that are not UTF-8 text are counted in `report` (a `LineReport`); if they are most of the file,
    raises naming it. A byte-order mark opening the file is dropped.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.strip():
        raise ValueError(f"Input file {path!r} is empty.")
    lines, bad, total = [], 0, 0
    for number, raw in enumerate(data.splitlines(), start=1):
        total += bool(raw.strip())
        try:
            text = raw.decode("utf-8")
            if "\x00" in text:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
        except UnicodeDecodeError as error:
            if strict_utf8:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start}); "
                    "convert the file to UTF-8 or fix the line."
                ) from None
            bad += 1
            lines.append((number, raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"), False))
            continue
        lines.append((number, text.lstrip("\ufeff") if number == 1 else text, True))
    if bad:
        if bad > MOSTLY_UNDECODABLE * total:
            source = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin1"
            raise ValueError(
                f"Input file {path!r}: {bad} of {total} lines are not UTF-8 text (a binary file, or another "
                f"encoding such as latin-1 or UTF-16?); convert it to UTF-8 (e.g. `iconv -f {source} -t utf-8`) "
                "or remove it from the data."
            )
        report.invalid_utf8 += bad
        report.invalid_by_file[path] = (bad, total)
    return lines


def numbered_text_lines(path, report, strict_utf8):
    """Yields `(line_number, text)` for every UTF-8 text line of `path` (see `file_lines`)."""
    for number, text, ok in file_lines(path, report, strict_utf8):
        if ok:
            yield number, text


def text_file_lines(path, report=None, strict_utf8=False):
    """Yields the UTF-8 text lines of one file (newline stripped), skipping and counting the others.

    `report` (a `LineReport`, e.g. a `kzoo.data.ReadReport`) receives the counts. Raises `ValueError` for an
    empty or mostly undecodable file.
    """
    for _, text in numbered_text_lines(os.fspath(path), report if report is not None else LineReport(), strict_utf8):
        yield text
