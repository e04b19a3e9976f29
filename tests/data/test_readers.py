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


def test_invalid_utf8_is_replaced_and_counted_or_raises(tmp_path):
    path = write(tmp_path / "bad.txt", b"good line\nbad \xff byte\n\nlast\n")
    lines, report = data.read_text_lines(path)
    assert lines == ["good line", "bad \ufffd byte", "last"]
    assert (report.invalid_utf8, report.skipped_empty) == (1, 1)
    with pytest.raises(ValueError, match=r"bad.txt:2: invalid UTF-8"):
        data.read_text_lines(path, strict_utf8=True)


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
