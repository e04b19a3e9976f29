"""The offline default corpora: written deterministically, readable by kzoo's readers,
and with labels that follow from the text."""

import collections
import filecmp
import json

import pytest

from kzoo import data
from kzoo.data import corpora


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    return {task: corpora.write_default_corpus(task, str(root), seed=3, size=200) for task in corpora.TASKS}


def test_same_seed_gives_identical_files(written, tmp_path):
    again = corpora.write_default_corpus("qa", str(tmp_path), seed=3, size=200)
    assert filecmp.cmp(again["train"], written["qa"]["train"], shallow=False)
    other = corpora.write_default_corpus("qa", str(tmp_path / "other"), seed=4, size=200)
    assert not filecmp.cmp(other["train"], written["qa"]["train"], shallow=False)


def test_prose_corpus_is_real_text_from_the_standard_library(written):
    documents, report = data.read_text_documents(written["lm"]["documents"], document_per="file")
    words = sum(len(sentence.split()) for document in documents for sentence in document)
    assert len(documents) >= 30 and words > 50_000, (len(documents), words)
    assert report.files == len(documents)


def test_classification_labels_are_balanced_and_follow_from_text(written):
    records, _ = data.read_csv(written["classification"]["train"], {"text": "text", "label": "label"})
    assert len(records) == 200
    counts = collections.Counter(r["label"] for r in records)
    assert set(counts) == {"negative", "positive"} and min(counts.values()) > 70
    by_text = collections.defaultdict(set)
    for record in records:
        by_text[record["text"]].add(record["label"])
    assert all(len(labels) == 1 for labels in by_text.values())
    assert any(" not " in r["text"] for r in records)


def test_ner_corpus_reads_as_conll_with_bio_tags(written):
    sentences, _ = data.read_conll(written["ner"]["train"])
    assert len(sentences) == 200
    tags = {tag for _, labels in sentences for tag in labels}
    assert tags <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"} and "I-ORG" in tags
    for tokens, labels in sentences:
        assert len(tokens) == len(labels)
        for previous, tag in zip(["O", *labels], labels, strict=False):
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:], (tokens, labels)


def test_qa_answers_sit_at_their_offsets(written):
    examples = data.read_squad(written["qa"]["train"])
    assert len(examples) == 800  # four questions per biography
    for example in examples:
        start = example.answer_start
        assert example.context[start:start + len(example.answer_text)] == example.answer_text
    with open(written["qa"]["test"]) as file:
        assert json.load(file)["data"][0]["paragraphs"]


def test_translation_is_a_consistent_function_of_the_source(written):
    records, _ = data.read_csv(written["translation"]["train"], {"source": "source", "target": "target"})
    lexicon = corpora._lexicon()
    for record in records:
        words = record["source"].split()
        assert len(record["target"].split()) == len(words)  # word-for-word with reordering
        verb = next(w for w in words if w in corpora._VERBS)
        assert record["target"].split()[-2] == lexicon[verb]  # the verb goes last, before "."


def test_summaries_state_the_result_found_in_the_document(written):
    records, _ = data.read_csv(written["summarization"]["train"], {"document": "document", "summary": "summary"})
    for record in records:
        winner, rest = record["summary"].split(" beat ", 1)
        assert f"{winner} won the game" in record["document"]


def test_unknown_task_and_tiny_size_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown default corpus 'images'; choose one of"):
        corpora.write_default_corpus("images", str(tmp_path))
    with pytest.raises(ValueError, match="`size` must be at least 4"):
        corpora.write_default_corpus("ner", str(tmp_path), size=2)
