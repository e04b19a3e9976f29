"""Offline default corpora: every recipe has data wherever kzoo is installed.

Nothing is downloaded. Each corpus is written as files in the formats the readers
take (so a recipe reads defaults and user data the same way), deterministically for
a seed:

- lm (language modelling, pretraining): docstrings of the Python standard library,
  real English prose shipped with every Python; `lm/<module>.txt`, a sentence a line.
- classification: generated product reviews, an aspect plus a (sometimes negated)
  polar adjective, labels negative/positive; `classification/{train,test}.csv`.
- ner: generated sentences with person, organisation and location names in BIO
  tags; `ner/{train,test}.conll`.
- qa: generated biographies with questions on birthplace, year, field and employer;
  `qa/{train,test}.json` in SQuAD 1.1 format.
- translation: English to a generated language with its own lexicon, adjectives after
  nouns and the verb last; `translation/{train,test}.tsv`.
- summarization: generated match reports with filler sentences; the summary states
  winner, loser and score; `summarization/{train,test}.tsv`.

The generated tasks are learnable only from the text (labels follow from words,
entities from context, answers from the passage), so a falling loss and an
above-chance metric show a model learned.
"""

import csv
import importlib
import inspect
import json
import os
import re

import numpy as np

TASKS = ("lm", "classification", "ner", "qa", "translation", "summarization")

# Standard-library modules with long, well-written docstrings (present on every CPython 3.11).
_STDLIB_MODULES = (
    "argparse", "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fractions", "functools", "heapq", "http.client", "http.server",
    "inspect", "ipaddress", "itertools", "json", "logging", "multiprocessing", "pathlib", "pickle", "queue",
    "random", "re", "sched", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "warnings", "zipfile", "ast",
    "calendar", "codecs", "configparser", "copy", "ftplib", "gettext", "gzip", "hashlib", "imaplib", "locale",
    "mailbox", "mimetypes", "numbers", "optparse", "pprint", "selectors", "smtplib", "ssl", "tempfile", "tkinter",
    "turtle", "urllib.request", "wave", "weakref", "xml.dom.minidom", "zoneinfo",
)


def write_default_corpus(task, directory, seed=0, size=None):
    """Writes the default corpus of `task` under `directory/<task>/` and returns its paths.

    Args:
        task: one of `TASKS`.
        directory: output folder (created).
        seed: generator seed; the same seed gives byte-identical files.
        size: number of generated training examples (test gets a quarter); None
            uses each task's default. Ignored for "lm" (the whole prose corpus).

    Returns:
        dict of name -> path ("train"/"test", or "documents" for the lm directory).
    """
    if task not in TASKS:
        raise ValueError(f"Unknown default corpus {task!r}; choose one of {list(TASKS)}.")
    folder = os.path.join(directory, task)
    os.makedirs(folder, exist_ok=True)
    if task == "lm":
        return {"documents": _write_prose(folder)}
    rng = np.random.default_rng(seed)
    writer, default_size, extension = _GENERATORS[task]
    size = default_size if size is None else int(size)
    if size < 4:
        raise ValueError(f"`size` must be at least 4 examples, got {size}.")
    paths = {}
    for split, count in (("train", size), ("test", max(1, size // 4))):
        paths[split] = os.path.join(folder, f"{split}.{extension}")
        writer(paths[split], rng, count)
    return paths


# --- language modelling: real prose ------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def stdlib_documents():
    """Docstring prose of the standard library: one document (list of sentences) per module."""
    documents = []
    for name in _STDLIB_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. tkinter without Tk: skip, the corpus stays deterministic per Python build
            continue
        texts = [inspect.getdoc(module) or ""]
        for attribute in sorted(vars(module)):
            value = getattr(module, attribute)
            if attribute.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                texts.append(inspect.getdoc(value) or "")
            elif inspect.isclass(value):
                texts.append(inspect.getdoc(value) or "")
                texts.extend(  # methods defined on the class itself, in definition order
                    inspect.cleandoc(member.__doc__ or "") for member in vars(value).values()
                    if inspect.isfunction(member)
                )
        sentences = [sentence for text in texts for sentence in _prose_sentences(text)]
        if sentences:
            documents.append((name, sentences))
    return documents


def _prose_sentences(text):
    """Sentences of a docstring's prose paragraphs (code, tables and signatures dropped)."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.strip().splitlines()
        if not lines or any(line.startswith((">>>", "    ", "|", "-", "=")) for line in lines):
            continue
        joined = " ".join(line.strip() for line in lines)
        if len(joined.split()) < 4 or not re.search(r"[a-z]", joined):
            continue
        sentences.extend(s.strip() for s in _SENTENCE_END.split(joined) if len(s.split()) >= 3)
    return sentences


def _write_prose(folder):
    for name, sentences in stdlib_documents():
        with open(os.path.join(folder, f"{name}.txt"), "w", encoding="utf-8") as file:
            file.write("\n".join(sentences) + "\n")
    return folder


# --- classification: reviews ---------------------------------------------------------------------

_ITEMS = ("camera", "laptop", "hotel room", "pizza", "concert", "novel", "phone", "bicycle", "jacket", "movie",
          "headset", "coffee", "keyboard", "tent", "museum tour", "backpack")
_ASPECTS = ("battery", "screen", "service", "price", "sound", "design", "quality", "delivery", "plot", "taste",
            "comfort", "support")
_POSITIVE = ("great", "excellent", "wonderful", "reliable", "superb", "pleasant", "fantastic", "solid", "lovely",
             "impressive", "brilliant", "decent")
_NEGATIVE = ("terrible", "awful", "poor", "disappointing", "broken", "weak", "horrible", "flimsy", "slow", "noisy",
             "mediocre", "useless")
_INTENSIFIERS = ("", "", "really ", "very ", "quite ", "truly ", "rather ")
_OPENERS = ("I bought this {item} last month.", "We tried the {item} on holiday.", "My friend recommended the {item}.",
            "The {item} arrived on time.", "I used the {item} every day this week.", "")


def _write_classification(path, rng, count):
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        for _ in range(count):
            item = rng.choice(_ITEMS)
            positive = bool(rng.integers(2))
            negated = rng.random() < 0.25  # "not great" is negative: words alone do not decide
            word_positive = positive != negated
            adjective = rng.choice(_POSITIVE if word_positive else _NEGATIVE)
            clause = f"the {rng.choice(_ASPECTS)} is {'not ' if negated else ''}{rng.choice(_INTENSIFIERS)}{adjective}"
            opener = rng.choice(_OPENERS).format(item=item)
            text = f"{opener} Overall {clause}.".strip()
            writer.writerow([text, "positive" if positive else "negative"])


# --- token classification: named entities ------------------------------------------------------

_FIRST = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena",
          "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Ulla", "Viktor", "Wen", "Yusuf")
_LAST = ("Almeida", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
         "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber")
_CITIES = ("Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Oslo", "Hanoi", "Porto Alegre", "New Delhi",
           "San Diego", "Cape Town", "Buenos Aires", "Tbilisi", "Reykjavik", "Kuala Lumpur")
_ORGS = ("Northwind Labs", "Bluefin Systems", "Acme Robotics", "Helios Energy", "Granite Bank", "Orbital Foods",
         "Lumen Health", "Crescent Media", "Vertex Motors", "Harbor Logistics", "Quill Press", "Summit Telecom")
_NER_TEMPLATES = (
    "{PER} works for {ORG} in {LOC} .",
    "Yesterday {PER} flew from {LOC} to {LOC} .",
    "{ORG} opened a new office in {LOC} last year .",
    "According to {PER} , {ORG} will hire more engineers .",
    "{PER} met {PER} at the {ORG} conference in {LOC} .",
    "The mayor of {LOC} thanked {ORG} for the donation .",
    "{PER} left {ORG} and moved to {LOC} .",
)


def _entity(kind, rng):
    if kind == "PER":
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" if rng.random() < 0.7 else str(rng.choice(_FIRST))
    return str(rng.choice(_CITIES if kind == "LOC" else _ORGS))


def _write_ner(path, rng, count):
    with open(path, "w", encoding="utf-8") as file:
        file.write("-DOCSTART- O\n\n")
        for _ in range(count):
            for word in rng.choice(_NER_TEMPLATES).split():
                kind = word.strip("{}") if word.startswith("{") else None
                if kind is None:
                    file.write(f"{word} O\n")
                    continue
                for index, token in enumerate(_entity(kind, rng).split()):
                    file.write(f"{token} {'B' if index == 0 else 'I'}-{kind}\n")
            file.write("\n")


# --- span QA: biographies ---------------------------------------------------------------------

_FIELDS = ("chemistry", "music", "economics", "architecture", "linguistics", "astronomy", "medicine", "law",
           "mathematics", "history")
_QUESTIONS = (
    ("city", "Where was {name} born?"),
    ("year", "In which year was {name} born?"),
    ("field", "What did {name} study?"),
    ("org", "Which company did {name} join?"),
)


def _biography(rng):
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    facts = {"city": str(rng.choice(_CITIES)), "year": str(int(rng.integers(1900, 2005))),
             "field": str(rng.choice(_FIELDS)), "org": str(rng.choice(_ORGS))}
    sentences = [
        f"{name} was born in {facts['city']} in {facts['year']}.",
        f"As a student, {name.split()[0]} studied {facts['field']} and played in a local band.",
        f"After graduating, {name.split()[0]} joined {facts['org']} as an analyst.",
        f"Friends describe {name.split()[0]} as patient and curious.",
    ]
    order = [0] + list(1 + rng.permutation(3))
    return name, facts, " ".join(sentences[i] for i in order)


def _write_qa(path, rng, count):
    paragraphs = []
    for index in range(count):
        name, facts, context = _biography(rng)
        qas = []
        for key, template in _QUESTIONS:
            answer = facts[key]
            start = context.index(answer, context.index(name) if key in ("city", "year") else 0)
            qas.append({"id": f"{index}-{key}", "question": template.format(name=name),
                        "answers": [{"text": answer, "answer_start": start}]})
        paragraphs.append({"context": context, "qas": qas})
    with open(path, "w", encoding="utf-8") as file:
        json.dump({"version": "kzoo-default-1.1", "data": [{"title": "biographies", "paragraphs": paragraphs}]}, file)


# --- translation: English -> a generated language ---------------------------------------------

_NOUNS = ("cat", "dog", "teacher", "farmer", "child", "bird", "doctor", "river", "city", "garden", "book", "horse",
          "baker", "king", "window", "boat")
_ADJECTIVES = ("small", "old", "happy", "green", "quiet", "tall", "brave", "cold", "bright", "lazy")
_VERBS = ("sees", "follows", "helps", "paints", "finds", "loves", "visits", "calls")


def _lexicon():
    """A fixed English -> invented-word dictionary (independent of the corpus seed)."""
    rng = np.random.default_rng(1234)
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    lexicon, used = {}, set()
    for word in ("the", "a", *_NOUNS, *_ADJECTIVES, *_VERBS):
        while True:
            syllables = rng.integers(1, 3) if word in ("the", "a") else rng.integers(2, 4)
            invented = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(syllables))
            if invented not in used:
                used.add(invented)
                lexicon[word] = invented
                break
    return lexicon


def translate(sentence_words, lexicon):
    """The target language: noun phrases are `noun adjective article`, the verb goes last."""
    subject, verb, obj = sentence_words
    return " ".join([*(_phrase(subject, lexicon)), *(_phrase(obj, lexicon)), lexicon[verb]])


def _phrase(phrase, lexicon):
    article, adjective, noun = phrase
    return [lexicon[noun]] + ([lexicon[adjective]] if adjective else []) + [lexicon[article]]


def _noun_phrase(rng):
    adjective = str(rng.choice(_ADJECTIVES)) if rng.random() < 0.6 else None
    return (str(rng.choice(("the", "a"))), adjective, str(rng.choice(_NOUNS)))


def _write_translation(path, rng, count):
    lexicon = _lexicon()
    with open(path, "w", encoding="utf-8") as file:
        file.write("source\ttarget\n")
        for _ in range(count):
            subject, verb, obj = _noun_phrase(rng), str(rng.choice(_VERBS)), _noun_phrase(rng)
            english = " ".join(w for w in (*subject, verb, *obj) if w)
            file.write(f"{english} .\t{translate((subject, verb, obj), lexicon)} .\n")


# --- summarization: match reports -------------------------------------------------------------

_TEAMS = ("Rovers", "Comets", "Falcons", "Harbor City", "Red Lions", "Northside", "United", "Wanderers", "Pirates",
          "Thunder")
_FILLER = (
    "The weather was cold and windy.", "Tickets sold out a week before the game.",
    "Both coaches praised the crowd.", "The referee showed three yellow cards.",
    "Local radio covered the match live.", "The pitch had been repaired over the summer.",
)


def _write_summarization(path, rng, count):
    with open(path, "w", encoding="utf-8") as file:
        file.write("document\tsummary\n")
        for _ in range(count):
            winner, loser = rng.choice(_TEAMS, size=2, replace=False)
            high, low = int(rng.integers(1, 6)), 0
            low = int(rng.integers(0, high))
            city = rng.choice(_CITIES)
            facts = [f"{winner} played {loser} in {city} on Saturday.",
                     f"{winner} won the game {high} to {low}."]
            filler = list(rng.choice(_FILLER, size=int(rng.integers(1, 4)), replace=False))
            sentences = facts[:1] + filler[:1] + facts[1:] + filler[1:]
            file.write(f"{' '.join(sentences)}\t{winner} beat {loser} {high} - {low} .\n")


_GENERATORS = {
    "classification": (_write_classification, 4000, "csv"),
    "ner": (_write_ner, 3000, "conll"),
    "qa": (_write_qa, 1500, "json"),
    "translation": (_write_translation, 6000, "tsv"),
    "summarization": (_write_summarization, 3000, "tsv"),
}
