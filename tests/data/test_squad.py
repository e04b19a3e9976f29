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
    with pytest.raises(ValueError, match=r"dev.json:\d+: question 'q1': answer_start=0 does not point at"):
        data.read_squad(_squad(tmp_path, [_qa("q1", "who won?", "Denver Broncos", start=0)]))
    bad = write(tmp_path / "broken.json", '{"data": [\n{"paragraphs": \n}')
    with pytest.raises(ValueError, match=r"broken.json:3: malformed JSON"):
        data.read_squad(bad)
    with pytest.raises(ValueError, match="empty.json.*is empty"):
        data.read_squad(write(tmp_path / "empty.json", ""))


def test_negative_answer_start_is_refused_naming_file_and_question(tmp_path):
    # context[-k:] can read the answer text, so the old check let it through and the question trained as "no answer".
    start = CONTEXT.index("2016") - len(CONTEXT)
    assert CONTEXT[start:start + 4] == "2016"
    path = _squad(tmp_path, [_qa("ok", "who won?", "Denver Broncos"), _qa("q-neg", "when?", "2016", start=start)])
    with pytest.raises(ValueError, match=r"dev.json:\d+: question 'q-neg': answer_start must be a non-negative int"):
        data.read_squad(path)


@pytest.mark.parametrize("start", ["seven", 7.5, True, "missing"])
def test_answer_start_that_is_not_an_integer_is_refused(tmp_path, start):
    qa = _qa("q2", "who won?", "Denver Broncos", start=start)
    if start == "missing":
        del qa["answers"][0]["answer_start"]
    path = _squad(tmp_path, [qa])
    with pytest.raises(ValueError, match=r"dev.json:\d+: question 'q2': answer_start must be a non-negative integer"):
        data.read_squad(path)


def test_empty_answer_text_is_refused(tmp_path):
    path = _squad(tmp_path, [_qa("q3", "who won?", "", start=4)])
    with pytest.raises(ValueError, match=r"dev.json:\d+: question 'q3': the answer text is empty"):
        data.read_squad(path)


@pytest.mark.parametrize("payload, message", [
    ({"data": {"title": "t"}}, r"dev.json: expected a JSON object with a 'data' list .*found data: dict"),
    ([1, 2], r"dev.json: expected a JSON object with a 'data' list"),
    ({"data": ["article"]}, r"dev.json: data\[0\] must be a JSON object, got str"),
    ({"data": [{"title": "t"}]}, r"dev.json: data\[0\] has no 'paragraphs'"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, r"dev.json: data\[0\].paragraphs\[0\] has no 'context'"),
    ({"data": [{"paragraphs": [{"context": 5, "qas": []}]}]}, r"data\[0\].paragraphs\[0\].context must be a string"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q9", "answers": []}]}]}]},
     r"dev.json:\d+: data\[0\].paragraphs\[0\].qas\[0\] has no 'question'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "q8", "question": "q?", "answers": [{"answer_start": 0}]}]}]}]},
     r"dev.json:\d+: question 'q8': answers\[0\] must be an object with a string 'text'"),
])
def test_missing_or_mistyped_squad_fields_are_one_line_errors(tmp_path, payload, message):
    path = write(tmp_path / "dev.json", json.dumps(payload, indent=1))
    with pytest.raises(ValueError, match=message):
        data.read_squad(path)


def test_invalid_utf8_in_squad_names_file_and_line(tmp_path):
    payload = json.dumps({"data": [{"paragraphs": [{"context": "caf\u00e9 ok", "qas": []}]}]}, indent=1,
                         ensure_ascii=False).encode().replace("é".encode(), b"\xe9")
    path = write(tmp_path / "latin.json", payload)
    line = payload[:payload.index(b"\xe9")].count(b"\n") + 1
    with pytest.raises(ValueError, match=rf"latin.json:{line}: invalid UTF-8"):
        data.read_squad(path)


def test_squad_file_with_a_byte_order_mark_reads(tmp_path):
    path = _squad(tmp_path, [_qa("q1", "who won?", "Denver Broncos")])
    with open(path, "rb") as file:
        payload = file.read()
    with open(path, "wb") as file:
        file.write(b"\xef\xbb\xbf" + payload)
    assert [example.answer_text for example in data.read_squad(path)] == ["Denver Broncos"]
