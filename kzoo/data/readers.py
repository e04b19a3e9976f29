"""Readers: plain text, jsonl, csv/tsv, TFRecord and (local) TFDS into Python records.

Text-like readers parse eagerly in Python so that every problem is reported with the
file and line where it happened, and none silently drops the rest of a file:

- empty (whitespace-only) lines are skipped and counted in the returned `ReadReport`;
- an empty file (no records at all) raises `ValueError` naming the file;
- a line that is not UTF-8 text (invalid UTF-8, or a NUL byte: binary data, UTF-16)
  is skipped with the record it belongs to, and counted per file in the `ReadReport`
  (`report.messages()` says "skipped 3 of 120 lines that are not UTF-8 text in x.txt");
  a file where most lines are not UTF-8 text (an image, latin-1 text) raises
  `ValueError` naming the file and the fix; pass `strict_utf8=True` to raise on the
  first such line instead, naming file and line (the rule of `kzoo.text.lines`, which
  the vocabulary trainers apply too);
- a malformed jsonl/csv line (bad JSON, missing field, wrong column count, a quote
  never closed) raises `ValueError("path:line: ...")`; a csv file with a header and no
  rows raises naming the file.

Records are held in memory; for corpora that do not fit, write TFRecords and use
`tfrecord_dataset`, which streams.
"""

import csv
import dataclasses
import io
import json
import os

import tensorflow as tf

from kzoo.text.lines import LineReport, file_lines, numbered_text_lines

LOCATION = "_location"  # record key holding "path:line" when a reader is asked for it


@dataclasses.dataclass
class ReadReport(LineReport):
    """What a reader read and what it skipped.

    Attributes:
        files, records: files read, records returned.
        skipped_empty: blank lines (or rows) skipped.
        skipped_records: records dropped because a line of theirs was not UTF-8 text
            (a csv row, a CoNLL sentence); text and jsonl readers drop just the line.
        skipped_labels: records dropped for a label unseen in training (`encode_labels`).
        invalid_utf8, invalid_by_file: the lines that are not UTF-8 text (`kzoo.text.lines.LineReport`).
    """

    files: int = 0
    records: int = 0
    skipped_empty: int = 0
    skipped_records: int = 0
    skipped_labels: int = 0

    def messages(self):
        """What was skipped, a line per file: "skipped 3 of 120 lines that are not UTF-8 text in x.txt", ..."""
        lines = super().messages()
        if self.skipped_records:
            lines.append(f"dropped {self.skipped_records} records that contained them")
        if self.skipped_labels:
            lines.append(f"dropped {self.skipped_labels} records whose label was not seen in training")
        return lines


def _list_files(path, extensions=None):
    """`path` itself, or the sorted files under directory `path` (recursively)."""
    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names
            if not name.startswith(".") and (extensions is None or name.endswith(tuple(extensions)))
        )
        if not files:
            raise ValueError(f"No input files found in directory {path!r}.")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"Input file {path!r} does not exist.")
    return [path]


def input_paths(paths, extensions=None):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [file for path in paths for file in _list_files(os.fspath(path), extensions)]


def read_text_documents(paths, document_per="file", strict_utf8=False):
    """Reads documents made of sentences, one sentence per line.

    Args:
        paths: a file, a directory (all files below it, sorted) or a list of them.
        document_per: `"file"` (each file is one document) or `"block"` (documents are
            separated by blank lines; the BERT pretraining corpus format).
        strict_utf8: raise on a line that is not UTF-8 text instead of skipping it.

    Returns:
        `(documents, report)`: a list of documents, each a list of sentence strings,
        and a `ReadReport` (blank lines inside a file-document count as skipped).
    """
    if document_per not in ("file", "block"):
        raise ValueError(f"document_per must be 'file' or 'block', got {document_per!r}.")
    report = ReadReport()
    documents = []
    for path in input_paths(paths):
        report.files += 1
        current = []
        for _, line in numbered_text_lines(path, report, strict_utf8):
            line = line.strip()
            if line:
                current.append(line)
                continue
            if document_per == "block" and current:
                documents.append(current)
                current = []
            elif document_per == "file":
                report.skipped_empty += 1
        if current:
            documents.append(current)
    report.records = len(documents)
    return documents, report


def read_text_lines(paths, strict_utf8=False):
    """Reads non-empty lines (stripped) of text files; returns `(lines, report)`."""
    report = ReadReport()
    lines = []
    for path in input_paths(paths):
        report.files += 1
        for _, line in numbered_text_lines(path, report, strict_utf8):
            if line.strip():
                lines.append(line.strip())
            else:
                report.skipped_empty += 1
    report.records = len(lines)
    return lines, report


def read_jsonl(paths, fields, strict_utf8=False, with_location=False):
    """Reads JSON-lines files, keeping `fields` of each object.

    Args:
        paths: file(s) or directory.
        fields: names to keep; a missing field is an error naming file and line. A
            dict `{"output_name": "field_in_file"}` renames; nested fields use dots
            (`"answer.text"`).
        with_location: add `"_location": "path:line"` to each record, so later errors
            (e.g. an unseen label) can name the file and line.

    Returns:
        `(records, report)`, records a list of dicts keyed by the output names.
    """
    fields = dict(fields) if isinstance(fields, dict) else {name: name for name in fields}
    report = ReadReport()
    records = []
    for path in input_paths(paths):
        report.files += 1
        for number, line in numbered_text_lines(path, report, strict_utf8):
            if not line.strip():
                report.skipped_empty += 1
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: malformed JSON ({error.msg} at column {error.colno}).") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}.")
            record = {out: _get_field(obj, name, path, number) for out, name in fields.items()}
            if with_location:
                record[LOCATION] = f"{path}:{number}"
            records.append(record)
    report.records = len(records)
    return records, report


def _get_field(obj, name, path, number):
    value = obj
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(obj) if isinstance(obj, dict) else []
            raise ValueError(f"{path}:{number}: missing field {name!r} (fields present: {keys}).")
        value = value[part]
    return value


def read_csv(paths, columns, delimiter=None, strict_utf8=False, with_location=False):
    """Reads csv/tsv files with a header row, keeping the named `columns`.

    Args:
        paths: file(s) or directory.
        columns: header names to keep (or a dict `{"output_name": "header_name"}`).
        delimiter: `","` or `"\\t"`; by default `"\\t"` for `.tsv` files, else `","`.
        with_location: as in `read_jsonl`.

    Returns:
        `(records, report)`, records a list of dicts of strings. Blank rows are skipped
        and counted; a row with a different number of cells than the header, malformed
        quoting (a quote never closed, text after a closing quote) or a file with no rows
        raises naming file and line (the line the row starts on).
    """
    columns = dict(columns) if isinstance(columns, dict) else {name: name for name in columns}
    report = ReadReport()
    records = []
    for path in input_paths(paths):
        report.files += 1
        sep = delimiter or ("\t" if path.endswith(".tsv") else ",")
        lines = file_lines(path, report, strict_utf8)
        invalid = {number for number, _, ok in lines if not ok}
        # An undecodable line is parsed (with U+FFFD) so that its quotes count; its row is dropped below.
        reader = csv.reader(io.StringIO("\n".join(line for _, line, _ in lines)), delimiter=sep, strict=True)
        start = 1  # the line the current row starts on (a quoted cell may span lines)
        try:
            header = next(reader)
            indices = _column_indices(header, columns, path)
            rows_in_file, start = 0, reader.line_num + 1
            for row in reader:
                number, filled = reader.line_num, any(cell.strip() for cell in row)
                rows_in_file += filled
                if not filled:
                    report.skipped_empty += 1
                elif invalid.intersection(range(start, number + 1)):
                    report.skipped_records += 1
                elif len(row) != len(header):
                    spans = f" (the row runs to line {number}: is a quote never closed?)" if number > start else ""
                    raise ValueError(f"{path}:{start}: expected {len(header)} cells (header {header}), "
                                     f"got {len(row)}{spans}: {row!r}.")
                else:
                    record = {out: row[index] for out, index in indices.items()}
                    if with_location:
                        record[LOCATION] = f"{path}:{start}"
                    records.append(record)
                start = number + 1
        except csv.Error as error:
            hint = ("a quoted field opened on this line is never closed" if "end of data" in str(error) else
                    "a field that starts with a quote must end with one; write a quote inside a field as \"\"")
            raise ValueError(f"{path}:{start}: malformed csv ({error}): {hint}.") from None
        if not rows_in_file:
            raise ValueError(f"{path}: only a header row ({header}), no data rows; add rows or remove the file.")
    report.records = len(records)
    return records, report


def _column_indices(header, columns, path):
    missing = [name for name in columns.values() if name not in header]
    if missing:
        raise ValueError(f"{path}:1: columns {missing} not in the header; available columns: {header}.")
    return {out: header.index(name) for out, name in columns.items()}


def write_tfrecord(path, records):
    """Writes dicts of strings (or lists of strings) as `tf.train.Example`s."""
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for record in records:
            feature = {}
            for name, value in record.items():
                values = value if isinstance(value, (list, tuple)) else [value]
                data = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in values]
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def tfrecord_dataset(paths, features, shuffle_files=False, seed=None):
    """Streams `tf.train.Example` TFRecords with scalar string `features` as a dataset of dicts.

    Files are listed (and optionally shuffled with `seed`) so that
    `AutoShardPolicy.FILE` can shard them across workers; an empty file raises naming it.
    A record lacking a feature fails at iteration time with TensorFlow's parse error.
    """
    files = input_paths(paths)
    for file in files:
        if os.path.getsize(file) == 0:
            raise ValueError(f"Input file {file!r} is empty.")
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in features}
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.flat_map(tf.data.TFRecordDataset)
    dataset = dataset.map(lambda record: tf.io.parse_single_example(record, spec))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    return dataset.with_options(options)


def tfds_dataset(name, split, data_dir=None):
    """`tensorflow_datasets` split `name`/`split`, only if installed and already prepared locally.

    Never downloads: if the package is missing or the data is not on disk, raises
    `ValueError` saying so (prepare it elsewhere with `tfds build` and copy `data_dir`).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            f"tfds_dataset({name!r}) needs tensorflow_datasets, which is not installed; "
            "install it and prepare the data offline, or use the file readers."
        ) from None
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as error:  # tfds raises many types for unknown names
        raise ValueError(f"tensorflow_datasets has no dataset {name!r}: {error}") from None
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        raise ValueError(
            f"Dataset {name!r} is not prepared under {builder.data_dir!r}; kzoo never downloads. "
            "Run `tfds build` where there is network access and copy the data directory here."
        )
    return builder.as_dataset(split=split, shuffle_files=False)
