import json

import numpy as np
import pytest

from kzoo import data
from tests.data.helpers import CLS, PAD, SEP, wordpiece, write

FILLER = " ".join(f"w{i}" for i in range(40))
CONTEXT = f"{FILLER} The Denver Broncos won the Super Bowl in 2016, w1 w2. {FILLER}"


def _squad(tmp_path, qas):
    payload = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    return write(tmp_path / "dev.json", json.dumps(payload, indent=1))


def _qa(qid, question, answer, start=None):
    start = CONTEXT.index(answer) if start is None else start
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}]}


def test_doc_stride_windows_recover_the_answer_exactly(tmp_path):
    path = _squad(tmp_path, [_qa("q1", "who won?", "Denver Broncos"), _qa("q2", "in?", "2016"),
                             {"id": "q3", "question": "who?", "answers": [], "is_impossible": True}])
    examples = data.read_squad(path)
    features = data.squad_features(examples, wordpiece(), sequence_length=32, cls_id=CLS, sep_id=SEP, pad_id=PAD,
                                   doc_stride=10, max_query_length=8)
    assert features["token_ids"].shape == features["segment_ids"].shape == (len(features["example_index"]), 32)
    assert features["offsets"].shape[1:] == (32, 2)
    for index, example in enumerate(examples):
        windows = np.flatnonzero(features["example_index"] == index)
        assert len(windows) > 2  # long context: several windows
        found = []
        for w in windows:
            start, end = features["start_positions"][w], features["end_positions"][w]
            text = data.answer_text(example.context, features["offsets"][w], start, end)
            if start == 0:
                assert end == 0 and text == ""
            else:
                found.append(text)
            ids = features["token_ids"][w]
            assert ids[0] == CLS and features["segment_ids"][w][ids.tolist().index(SEP) + 1] == 1
        if example.answer_text:
            assert found and set(found) == {example.answer_text}
        else:
            assert not found


def test_windows_cover_the_whole_context(tmp_path):
    examples = data.read_squad(_squad(tmp_path, [_qa("q1", "who won?", "Denver Broncos")]))
    features = data.squad_features(examples, wordpiece(), sequence_length=24, cls_id=CLS, sep_id=SEP, pad_id=PAD,
                                   doc_stride=7)
    covered = set()
    for offsets in features["offsets"]:
        covered |= {tuple(span) for span in offsets.tolist() if span[0] >= 0}
    ids, offsets = data.tokenize_with_offsets(wordpiece(), CONTEXT)
    assert covered == {tuple(span) for span in offsets}
    dataset = data.squad_dataset(features, batch_size=2)
    inputs, targets = next(iter(dataset))
    assert sorted(inputs) == ["padding_mask", "segment_ids", "token_ids"]
    assert sorted(targets) == ["end_logits", "start_logits"]


def test_bad_squad_files(tmp_path):
    with pytest.raises(ValueError, match=r"dev.json: question 'q1': answer_start=0 does not point at"):
        data.read_squad(_squad(tmp_path, [_qa("q1", "who won?", "Denver Broncos", start=0)]))
    bad = write(tmp_path / "broken.json", '{"data": [\n{"paragraphs": \n}')
    with pytest.raises(ValueError, match=r"broken.json:3: malformed JSON"):
        data.read_squad(bad)
    with pytest.raises(ValueError, match="empty.json.*is empty"):
        data.read_squad(write(tmp_path / "empty.json", ""))
