"""Reading a recipe's data: the offline default corpus, user csv/tsv pairs, held-out splits, and telling the user
what a reader skipped. Records are plain dicts/lists; the `kzoo.data` pipelines turn them into batches.
"""

import sys

from kzoo.run_directory import RunDirectory


def default_corpus(task, workdir, seed=0, size=None):
    """Writes the offline default corpus of `task` under `<workdir>/data` (deterministic); returns its paths."""
    from kzoo.data import corpora

    return corpora.write_default_corpus(task, RunDirectory(workdir).data, seed=seed, size=size)


def report_reading(name, what, report):
    """Prints, one line each, what a `kzoo.data` reader skipped in the `what` data (e.g. lines that are not UTF-8).

    Example: `kzoo train bert_classify: training data: skipped 3 of 120 lines that are not UTF-8 text in x.csv`.
    """
    for message in report.messages():
        print(f"kzoo train {name}: {what}: {message}", file=sys.stderr)


def require_filled(records, keys, names):
    """Raises naming file and line (records read `with_location=True`) if a record's `keys` cell is blank.

    A blank label would become a class of its own, a blank target would teach "stop at once": both silently.
    `names` maps each key to the column name the user gave.
    """
    from kzoo.data.readers import LOCATION

    for number, record in enumerate(records, start=1):
        for key in keys:
            if key in record and not str(record[key]).strip():
                where = record.get(LOCATION, f"record {number}")
                raise ValueError(f"{where}: the {names[key]!r} cell is empty; fill it or remove the row.")
    return records


def split_holdout(items, every=10):
    """Deterministic split: every `every`-th item is held out. Returns `(train, held_out)`."""
    train = [item for index, item in enumerate(items) if index % every != every - 1]
    held_out = [item for index, item in enumerate(items) if index % every == every - 1]
    return train, held_out


def read_text_pairs(task, data_config, workdir):
    """(train, held-out) lists of (source, target) strings for the seq2seq recipes.

    Reads `data_config.train_files` / `eval_files` (csv/tsv with a header; columns
    `source_column` / `target_column`), or the offline default corpus of `task` with its
    test split; user data without eval files holds out every tenth pair.
    """
    from kzoo import data

    columns = {"source": data_config.source_column, "target": data_config.target_column}
    paths = data_config.train_files.split(",") if data_config.train_files else None
    eval_paths = data_config.eval_files.split(",") if data_config.eval_files else None
    if paths is None:
        corpus = default_corpus(task, workdir)
        paths, eval_paths = [corpus["train"]], eval_paths or [corpus["test"]]
    recipe = {"translation": "seq2seq_translate", "summarization": "seq2seq_summarize"}.get(task, task)
    train, report = data.read_csv(paths, columns, with_location=True)
    report_reading(recipe, "training data", report)
    require_filled(train, columns, columns)
    held_out = None
    if eval_paths:
        held_out, report = data.read_csv(eval_paths, columns, with_location=True)
        report_reading(recipe, "held-out data", report)
        require_filled(held_out, columns, columns)
    if held_out is None:
        train, held_out = split_holdout(train)
    if not train or not held_out:
        raise ValueError(f"no source/target pairs found in {paths}: pass --data.train_files with csv/tsv files.")
    return [(r["source"], r["target"]) for r in train], [(r["source"], r["target"]) for r in held_out]
