"""Extractive QA (SQuAD v1.1/v2.0 json): windows with doc stride, token spans, offsets back to text.

Character offsets: the tokenizer protocol gives no offsets, so the context is split on
whitespace into words with known character spans, each word is tokenized on its own,
and each sub-token gets a span inside its word: if the tokenizer has `id_to_token`,
the sub-token strings (WordPiece `##` removed) are matched left to right in the
lower-cased word, which gives exact spans for punctuation split off a word
("Broncos," → "broncos" + ","); if any piece of a word cannot be matched ([UNK],
accents stripped by normalisation) all its pieces get the whole word's span.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from kzoo.data import _common
from kzoo.text import packing


@dataclasses.dataclass
class SquadExample:
    id: str
    question: str
    context: str
    answer_text: str  # "" when unanswerable
    answer_start: int  # character offset, -1 when unanswerable


def read_squad(path):
    """Reads a SQuAD-format json file (`data/paragraphs/qas/answers`) into `SquadExample`s.

    Uses the first answer of each question; `is_impossible` questions (v2.0) get an
    empty answer. Raises `ValueError` naming the file, the line (of the question id, or
    of the JSON error) and the question, on invalid UTF-8, malformed JSON, a missing or
    mistyped field (`data` a list, `context`/`question`/answer `text` strings, ...), or an
    `answer_start` that is not a non-negative integer pointing at the answer text.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"SQuAD file {path!r} does not exist.")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not JSON
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: invalid UTF-8 ({error.reason}); save the file as UTF-8.") from None
    if not text.strip():
        raise ValueError(f"Input file {path!r} is empty.")
    try:
        top = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: malformed JSON ({error.msg} at column {error.colno}).") from None
    if not isinstance(top, dict) or not isinstance(top.get("data"), list):
        found = type(top.get("data")).__name__ if isinstance(top, dict) and "data" in top else "none"
        raise ValueError(f"{path}: expected a JSON object with a 'data' list (SQuAD format), found data: {found}.")
    examples = []
    for i, article in enumerate(top["data"]):
        where = f"data[{i}]"
        paragraphs = _field(article, "paragraphs", list, path, where, text)
        for j, paragraph in enumerate(paragraphs):
            context = _field(paragraph, "context", str, path, f"{where}.paragraphs[{j}]", text)
            qas = _field(paragraph, "qas", list, path, f"{where}.paragraphs[{j}]", text)
            for k, qa in enumerate(qas):
                examples.append(_example(path, text, context, qa, f"{where}.paragraphs[{j}].qas[{k}]"))
    if not examples:
        raise ValueError(f"{path}: no questions found.")
    return examples


def _field(obj, name, kind, path, where, text):
    """`obj[name]`, which must be a `kind`; raises naming file, line and JSON path otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: {where} must be a JSON object, got {type(obj).__name__}; fix the SQuAD file.")
    if name not in obj:
        raise ValueError(f"{_locate(path, text, obj)}: {where} has no {name!r} (fields: {sorted(obj)}); "
                         "add it (SQuAD format).")
    if not isinstance(obj[name], kind):
        raise ValueError(f"{_locate(path, text, obj)}: {where}.{name} must be a {_JSON_TYPES[kind]}, "
                         f"got {obj[name]!r:.60}.")
    return obj[name]


_JSON_TYPES = {list: "list", str: "string", dict: "JSON object"}


def _locate(path, text, obj):
    """`path:line` of the line spelling `obj`'s question id (if it has one and it occurs once), else `path`."""
    qid = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(qid, str):
        needle = json.dumps(qid)
        at = text.find(needle)
        if at >= 0 and text.find(needle, at + 1) < 0:
            return f"{path}:{text.count(chr(10), 0, at) + 1}"
    return path


def _example(path, text, context, qa, where):
    question = _field(qa, "question", str, path, where, text)
    qid = str(qa.get("id", where))
    where = f"{_locate(path, text, qa)}: question {qid!r}"
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise ValueError(f"{where}: 'answers' must be a list, got {answers!r:.60}.")
    if qa.get("is_impossible") or not answers:
        return SquadExample(qid, question, context, "", -1)
    answer = answers[0]
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise ValueError(f"{where}: answers[0] must be an object with a string 'text', got {answer!r:.60}.")
    start = answer.get("answer_start")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"{where}: answer_start must be a non-negative integer character offset into the "
                         f"context, got {start!r}.")
    answer = answer["text"]
    if not answer.strip():
        raise ValueError(f"{where}: the answer text is empty; give the answer, or mark the question "
                         "\"is_impossible\": true with no answers (SQuAD 2.0).")
    if context[start:start + len(answer)] != answer:
        raise ValueError(
            f"{where}: answer_start={start} does not point at {answer!r} "
            f"(context there reads {context[start:start + len(answer)]!r})."
        )
    return SquadExample(qid, question, context, answer, start)


def _words(text):
    """Whitespace-separated words with their `(start, end)` character spans."""
    words, spans, start = [], [], None
    for i, char in enumerate(text + " "):
        if char.isspace():
            if start is not None:
                words.append(text[start:i])
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    return words, spans


def _piece_spans(word, span, pieces, tokenizer):
    """Character spans of a word's sub-tokens (see the module docstring)."""
    whole = [span] * len(pieces)
    if not hasattr(tokenizer, "id_to_token"):
        return whole
    lowered, cursor, spans = word.lower(), 0, []
    for piece in pieces:
        string = tokenizer.id_to_token(int(piece)).lower()
        string = string[2:] if string.startswith("##") else string
        found = lowered.find(string, cursor) if string else -1
        if found < 0 or len(lowered) != len(word):
            return whole
        spans.append((span[0] + found, span[0] + found + len(string)))
        cursor = found + len(string)
    return spans


def tokenize_with_offsets(tokenizer, text):
    """Sub-token ids of `text` and their character spans: `(ids, offsets)` lists."""
    return _tokenize_texts_with_offsets(tokenizer, [text])[text]


def _tokenize_texts_with_offsets(tokenizer, texts):
    """`{text: (ids, offsets)}` for distinct `texts`, all their words tokenized in a few batched calls."""
    texts = list(dict.fromkeys(texts))
    split = [_words(text) for text in texts]
    prefix = getattr(tokenizer, "word_prefix", "")  # byte-level BPE: " ", as the word follows a space in the text
    pieces = iter(_common.tokenize_python(tokenizer, [prefix + word for words, _ in split for word in words]))
    out = {}
    for text, (words, spans) in zip(texts, split, strict=True):
        ids, offsets = [], []
        for word, span in zip(words, spans, strict=True):
            word_pieces = next(pieces)
            ids.extend(word_pieces)
            offsets.extend(_piece_spans(word, span, word_pieces, tokenizer))
        out[text] = (ids, offsets)
    return out


def squad_features(
    examples, tokenizer, *, sequence_length, cls_id, sep_id, pad_id, doc_stride=128, max_query_length=64,
):
    """Turns examples into fixed-length windows; returns a dict of NumPy arrays.

    Each example gives one window per `doc_stride` step over its context tokens:
    `[CLS] question [SEP] context window [SEP]` (RoBERTa-style tokenizers: `<s> question </s></s> window </s>`,
    all in segment 0; `_common.pair_framing`). A window's `start_positions`/
    `end_positions` are the answer's first and last token, or 0 ([CLS]) if the answer
    is not entirely inside it (or the question is unanswerable).

    Returns:
        dict: `token_ids`, `segment_ids`, `padding_mask`, `start_positions`,
        `end_positions` int32; `offsets` int32 `(n, s, 2)` character spans in the
        context (-1 outside the context); `example_index` int32 `(n,)` into `examples`.
    """
    _common.check_special_ids(cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)
    questions = _common.tokenize_python(tokenizer, [example.question for example in examples])
    contexts = _tokenize_texts_with_offsets(tokenizer, [example.context for example in examples])
    rows = {name: [] for name in ("question", "window", "start_positions", "end_positions", "offsets",
                                  "example_index")}
    framing = _common.pair_framing(tokenizer)
    between = len(framing["pair_start_ids"])  # tokens between the question's [SEP] and the window
    for index, (example, question) in enumerate(zip(examples, questions, strict=True)):
        question = question[:max_query_length]
        context_ids, offsets = contexts[example.context]
        answer = _answer_tokens(example, offsets)
        window = sequence_length - len(question) - 3 - between
        if window < 1:
            raise ValueError(f"sequence_length={sequence_length} leaves no room for the context; raise it.")
        begin = 0
        while True:
            end = min(begin + window, len(context_ids))
            prefix = len(question) + 2 + between
            rows["question"].append(question)
            rows["window"].append(context_ids[begin:end])
            rows["offsets"].append([(-1, -1)] * prefix + offsets[begin:end] + [(-1, -1)])
            inside = answer is not None and begin <= answer[0] and answer[1] < end
            rows["start_positions"].append(answer[0] - begin + prefix if inside else 0)
            rows["end_positions"].append(answer[1] - begin + prefix if inside else 0)
            rows["example_index"].append(index)
            if end >= len(context_ids):
                break
            begin += min(doc_stride, window)  # a stride beyond the window would skip tokens
    # Question and window fit by construction: the packer only lays out [CLS] question [SEP] window [SEP].
    packed = packing.pack(_ragged(rows.pop("question")), _ragged(rows.pop("window")), sequence_length=sequence_length,
                          start_ids=(cls_id,), end_ids=(sep_id,), pad_id=pad_id, truncate="waterfall",
                          pair_start_ids=framing["pair_start_ids"])
    if not framing["pair_segments"]:
        packed["segment_ids"] = tf.zeros_like(packed["segment_ids"])
    return _to_arrays(rows, packed, sequence_length)


def _ragged(lists):
    """(n, None) ragged int32 from a list of lists of ids."""
    lengths = np.array([len(ids) for ids in lists], np.int64)
    return tf.RaggedTensor.from_row_lengths(np.array([i for ids in lists for i in ids], np.int32), lengths)


def _answer_tokens(example, offsets):
    """First and last context-token index of the answer, or None."""
    if example.answer_start < 0:
        return None
    start_char, end_char = example.answer_start, example.answer_start + len(example.answer_text)
    tokens = [i for i, (start, end) in enumerate(offsets) if start < end_char and end > start_char]
    return (tokens[0], tokens[-1]) if tokens else None


def _to_arrays(rows, packed, sequence_length):
    out = {
        "token_ids": packed["token_ids"].numpy(),
        "segment_ids": packed["segment_ids"].numpy(),
        "padding_mask": packed["padding_mask"].numpy().astype(np.int32),
        "offsets": np.full((len(rows["offsets"]), sequence_length, 2), -1, np.int32),
    }
    for i, offsets in enumerate(rows["offsets"]):
        out["offsets"][i, :len(offsets)] = offsets
    for name in ("start_positions", "end_positions", "example_index"):
        out[name] = np.array(rows[name], np.int32)
    return out


def squad_dataset(features, *, batch_size=None, shuffle=False, seed=0, input_context=None, drop_remainder=False):
    """`(inputs, {"start_logits": start, "end_logits": end})` for `BertSpanQA.fit` from `squad_features`."""
    inputs = {name: features[name] for name in ("token_ids", "segment_ids", "padding_mask")}
    targets = {"start_logits": features["start_positions"], "end_logits": features["end_positions"]}
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    dataset = _common.shuffle_source(_common.shard_source(dataset, input_context), shuffle, seed)
    return _common.finish(dataset, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)


def answer_text(context, offsets, start, end):
    """The context text from token `start` to token `end` of one window (`offsets` `(s, 2)`).

    Returns "" for the [CLS] answer (no answer), a span outside the context, or
    `end < start`.
    """
    start, end = int(start), int(end)
    if end < start or offsets[start][0] < 0 or offsets[end][0] < 0:
        return ""
    return context[int(offsets[start][0]):int(offsets[end][1])]
