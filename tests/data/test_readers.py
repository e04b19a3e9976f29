import pathlib

import numpy as np
import pytest
import tensorflow as tf

from kzoo import data
from tests.data.helpers import write


def test_text_documents_per_file_and_per_block(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder / "a.txt", "one.\n\ntwo.\n")
    write(folder / "b.txt", "three.\n")
    documents, report = data.read_text_documents(str(folder))
    assert documents == [["one.", "two."], ["three."]]
    assert (report.files, report.records, report.skipped_empty) == (2, 2, 1)

    blocks = write(tmp_path / "blocks.txt", "a b.\nc d.\n\n\ne f.\n")
    documents, report = data.read_text_documents(blocks, document_per="block")
    assert documents == [["a b.", "c d."], ["e f."]]


def test_empty_file_names_the_file(tmp_path):
    path = write(tmp_path / "empty.txt", "\n  \n")
    with pytest.raises(ValueError, match="empty.txt.*is empty"):
        data.read_text_lines(path)


def test_invalid_utf8_lines_are_skipped_and_counted_or_raise(tmp_path):
    # Lines used to be kept with U+FFFD in place of the bad bytes, and the count went unreported.
    path = write(tmp_path / "bad.txt", b"good line\nbad \xff byte\n\nlast\nmore\n")
    lines, report = data.read_text_lines(path)
    assert lines == ["good line", "last", "more"]
    assert (report.invalid_utf8, report.skipped_empty) == (1, 1)
    assert report.messages() == [f"skipped 1 of 4 lines that are not UTF-8 text in {path}"]
    with pytest.raises(ValueError, match=r"bad.txt:2: not UTF-8 text \(invalid start byte at byte 4\)"):
        data.read_text_lines(path, strict_utf8=True)


def test_every_reader_skips_the_records_of_undecodable_lines(tmp_path):
    latin = "café".encode("latin-1")
    docs = write(tmp_path / "doc.txt", b"one.\n" + latin + b" two.\nthree.\nfour.\n")
    documents, report = data.read_text_documents(docs)
    assert documents == [["one.", "three.", "four."]] and report.invalid_utf8 == 1
    jsonl = write(tmp_path / "x.jsonl", b'{"t": "a"}\n{"t": "' + latin + b'"}\n{"t": "b"}\n{"t": "c"}\n')
    records, report = data.read_jsonl(jsonl, ["t"])
    assert [r["t"] for r in records] == ["a", "b", "c"] and report.invalid_utf8 == 1
    # csv: a quoted cell spanning lines 3-4 holds the bad line; that row goes, the others parse as written.
    table = write(tmp_path / "x.csv", b'text,label\na,p\n"b\n' + latin + b'",n\nc,p\nd,n\n')
    records, report = data.read_csv(table, ["text", "label"], with_location=True)
    assert [(r["text"], r["_location"].rsplit(":", 1)[1]) for r in records] == [("a", "2"), ("c", "5"), ("d", "6")]
    assert (report.invalid_utf8, report.skipped_records) == (1, 1)
    assert report.messages()[-1] == "dropped 1 records that contained them"
    conll = write(tmp_path / "x.conll", b"A O\nB O\n\n" + latin + b" O\nC O\n\nD O\nE O\n\nF O\n")
    sentences, report = data.read_conll(conll)
    assert sentences == [(["A", "B"], ["O", "O"]), (["D", "E"], ["O", "O"]), (["F"], ["O"])]
    assert (report.invalid_utf8, report.skipped_records) == (1, 1)


def test_a_file_that_is_mostly_not_utf8_text_is_refused_naming_it(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder / "notes.txt", "a sentence.\nanother one.\n")
    rng = np.random.default_rng(0)
    write(folder / "photo.jpg", b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"photo.jpg'?: \d+ of \d+ lines are not UTF-8 text.*convert it to UTF-8"):
        data.read_text_documents(str(folder))
    latin = write(tmp_path / "latin.tsv", "src\ttgt\ncafé\tcoffee\ncrème\tcream\nok\tok\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.tsv'?: 3 of 4 lines are not UTF-8 text"):
        _half_or_more(latin)
    utf16 = write(tmp_path / "utf16.txt", "one line\ntwo lines\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"utf16.txt'?: 3 of 3 lines are not UTF-8 text.*iconv -f utf-16"):
        data.read_text_lines(utf16)


def _half_or_more(path):
    """A file exactly half undecodable is still read (more than half is refused); one more bad line is refused."""
    records, report = data.read_csv(path, ["src", "tgt"])
    assert [r["src"] for r in records] == ["ok"] and report.invalid_utf8 == 2
    path = pathlib.Path(path)
    path.write_bytes(path.read_bytes().replace(b"ok\tok", "gâteau\tcake".encode("latin-1")))
    data.read_csv(path, ["src", "tgt"])


def test_header_only_csv_names_the_file(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\n\n")
    with pytest.raises(ValueError, match=r"train.csv: only a header row \(\['text', 'label'\]\), no data rows"):
        data.read_csv(path, ["text", "label"])


def test_unterminated_quote_is_reported_at_the_line_it_opens(tmp_path):
    rows = [f"row {i},pos" for i in range(2, 21)] + ['"row 21,neg'] + [f"row {i},pos" for i in range(22, 40)]
    path = write(tmp_path / "x.csv", "text,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"x.csv:21: malformed csv .*a quoted field opened on this line is never"):
        data.read_csv(path, ["text", "label"])
    one_column = write(tmp_path / "y.csv", "text\na\n\"b\nc\nd\n")  # used to come back as one row "b\nc\nd"
    with pytest.raises(ValueError, match=r"y.csv:3: malformed csv"):
        data.read_csv(one_column, ["text"])
    merged = write(tmp_path / "z.csv", 'text,label\na,p\n"b,n\nc,p\nd",n,extra\ne,p\n')
    with pytest.raises(ValueError, match=r"z.csv:3: expected 2 cells .*runs to line 5: is a quote never closed"):
        data.read_csv(merged, ["text", "label"])


def test_a_tsv_cell_that_starts_with_a_quote_and_goes_on_is_an_error_not_silently_unquoted(tmp_path):
    path = write(tmp_path / "x.tsv", 'source\ttarget\nok\tok\n"Go!" he said.\tx\n')  # used to read: Go! he said.
    with pytest.raises(ValueError, match=r"x.tsv:3: malformed csv .*write a quote inside a field as"):
        data.read_csv(path, ["source", "target"])


def test_jsonl_fields_renames_and_errors(tmp_path):
    lines = '{"text": "a", "meta": {"label": "p"}}\n\n{"text": "b", "meta": {"label": "n"}}\n'
    path = write(tmp_path / "x.jsonl", lines)
    records, report = data.read_jsonl(path, {"text": "text", "label": "meta.label"})
    assert records == [{"text": "a", "label": "p"}, {"text": "b", "label": "n"}]
    assert report.skipped_empty == 1

    bad = write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": "b"\n{"text": "c"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: malformed JSON"):
        data.read_jsonl(bad, ["text"])
    missing = write(tmp_path / "missing.jsonl", '{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(ValueError, match=r"missing.jsonl:2: missing field 'text'"):
        data.read_jsonl(missing, ["text"])


def test_csv_and_tsv(tmp_path):
    csv_path = write(tmp_path / "x.csv", 'text,label,extra\n"hello, world",pos,1\n\nbye,neg,2\n')
    records, report = data.read_csv(csv_path, ["text", "label"])
    assert records == [{"text": "hello, world", "label": "pos"}, {"text": "bye", "label": "neg"}]
    assert report.skipped_empty == 1
    tsv_path = write(tmp_path / "x.tsv", "sentence\tgold\nhi there\tpos\n")
    records, _ = data.read_csv(tsv_path, {"text": "sentence", "label": "gold"})
    assert records == [{"text": "hi there", "label": "pos"}]


def test_csv_errors_name_file_and_line(tmp_path):
    path = write(tmp_path / "ragged.csv", "text,label\na,pos\nb,neg,extra\nc,pos\n")
    with pytest.raises(ValueError, match=r"ragged.csv:3: expected 2 cells"):
        data.read_csv(path, ["text", "label"])
    with pytest.raises(ValueError, match=r"ragged.csv:1: columns \['txt'\] not in the header"):
        data.read_csv(path, ["txt"])


def test_tfrecord_round_trip_and_empty_file(tmp_path):
    path = tmp_path / "x.tfrecord"
    data.write_tfrecord(path, [{"text": "a b", "label": "p"}, {"text": "c", "label": "n"}])
    dataset = data.tfrecord_dataset(str(path), ["text", "label"])
    rows = [(r["text"].numpy().decode(), r["label"].numpy().decode()) for r in dataset]
    assert rows == [("a b", "p"), ("c", "n")]
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.FILE
    empty = write(tmp_path / "empty.tfrecord", "")
    with pytest.raises(ValueError, match="empty.tfrecord.*is empty"):
        data.tfrecord_dataset(empty, ["text"])


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        data.read_text_lines(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="No input files"):
        data.read_text_lines(str(tmp_path))


def test_tfds_never_downloads():
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="tensorflow_datasets, which is not installed"):
            data.tfds_dataset("glue/sst2", "train")
    else:
        with pytest.raises(ValueError, match="not prepared|no dataset"):
            data.tfds_dataset("glue/sst2", "train", data_dir="/nonexistent/kzoo")
