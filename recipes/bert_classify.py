"""BERT sequence classification: fine-tune (or train from scratch) `BertClassifier`.

Default data (offline): generated product reviews (`kzoo.data.corpora`, 4,000 train /
1,000 test, labels negative/positive decided by a polar adjective and an optional
"not"), from `classification/{train,test}.csv`; a WordPiece vocabulary is trained on
the training texts. Bring your own with `--data.train_file=FILE.csv|.tsv` (a header row;
columns named by `--data.text_column`, `--data.label_column`, and `--data.text_pair_column`
for sentence pairs), `--data.eval_file`, and optionally `--data.tokenizer_dir` (a BERT
`vocab.txt`, e.g. an imported checkpoint's).

    kzoo train bert_classify                                  # defaults, ~1-2 minutes on 2 CPU cores
    python recipes/bert_classify.py --data.train_file=reviews.csv --data.eval_file=dev.csv --train.steps=2000
    kzoo train bert_pretrain && kzoo train bert_classify --model.checkpoint=runs/bert_pretrain/model.keras

Starting from a trained model: `--model.checkpoint=PATH` takes the backbone of a kzoo
`.keras` file (e.g. bert_pretrain's `BertPretrainer`; its tokenizer is the `tokenizer/`
folder beside it), a Hugging Face BERT, RoBERTa, XLM-R, DistilBERT or
ELECTRA directory or a keras-hub BERT preset directory,
and the checkpoint's tokenizer instead of a trained vocabulary (`--data.tokenizer_dir`
replaces it); the classification head is new. The architecture comes with the
checkpoint: `--model.preset` does not apply, `--model.overrides` is refused, and
`--model.dropout` sets the new head's dropout only (the backbone keeps the
checkpoint's, built into its layers). A word the checkpoint's vocabulary cannot spell
becomes [UNK]; bert_pretrain's default vocabulary (trained on Python docstrings)
spells every word of the default reviews in ~2-2.5 pieces.

The label vocabulary (sorted training labels) is saved as `tokenizer/labels.json`
beside `model.keras`. Metrics: held-out accuracy and macro F1 over every held-out
example: one whose label never occurs in training counts as wrong (the model has no
output for it; the recipe prints how many and where), and only the held-out loss,
which needs an output for the gold label, leaves such examples out. TensorBoard also
shows the confusion matrix (an image) and per-class precision/recall/F1 (a table).
"""

import dataclasses
import os
import sys

from kzoo import data, metrics, models
from kzoo.recipes import (
    FineTuningModelConfig,
    RecipeParts,
    default_corpus,
    prepare_tokenizer,
    pretrained_start,
    report_reading,
    require_filled,
    run_recipe,
)
from kzoo.run_directory import LABELS_FILE
from kzoo.train import TrainConfig
from kzoo.visualize import tasks


@dataclasses.dataclass
class DataConfig:
    train_file: str = ""  # csv/tsv with a header; empty: the default corpus
    eval_file: str = ""  # empty: the default corpus's test split (required with train_file)
    text_column: str = "text"
    text_pair_column: str = ""  # second segment for pair tasks (NLI, paraphrase); empty: single texts
    label_column: str = "label"
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer, else train a WordPiece vocabulary
    vocabulary_size: int = 1000
    sequence_length: int = 32
    eval_examples: int = 500  # held-out examples scored at each evaluation (0: all)


@dataclasses.dataclass
class Config:
    model: FineTuningModelConfig = dataclasses.field(
        default_factory=lambda: FineTuningModelConfig(preset="bert_tiny", dropout=0.1))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30, decay="linear", eval_every=100))


def read_records(config, workdir):
    """(train, held-out) records: dicts with "text" (and "text_pair") and "label"."""
    columns = {"text": config.data.text_column, "label": config.data.label_column}
    if config.data.text_pair_column:
        columns["text_pair"] = config.data.text_pair_column
    if config.data.train_file:
        if not config.data.eval_file:
            raise ValueError("--data.train_file needs --data.eval_file (held-out examples for the metrics).")
        paths = {"train": config.data.train_file, "test": config.data.eval_file}
    else:
        paths = default_corpus("classification", workdir)
    train, report = data.read_csv(paths["train"], columns, with_location=True)
    report_reading("bert_classify", "training data", report)
    held_out, report = data.read_csv(paths["test"], columns, with_location=True)
    report_reading("bert_classify", "held-out data", report)
    for records in (train, held_out):
        require_filled(records, ["label"], columns)
    if config.data.eval_examples:
        held_out = held_out[:config.data.eval_examples]
    return train, held_out


def report_unseen_labels(unseen, total, labels):
    """Prints the held-out labels unseen in training (with where they are); refuses if no held-out label was seen."""
    if not unseen:
        return
    count = sum(len(where) for where in unseen.values())
    if count == total:
        raise ValueError(f"none of the held-out labels {sorted(unseen)} occurs in the training labels {labels.labels}; "
                         "check --data.label_column and that both files label the same way.")
    listed = "; ".join(f"{label!r} x{len(where)} (first at {where[0]})" for label, where in unseen.items())
    print(f"kzoo train bert_classify: {count} of {total} held-out examples have labels never seen in training: "
          f"{listed}. accuracy and macro_f1 count them as wrong (the model has no output for them); "
          "the held-out loss leaves them out.", file=sys.stderr)


def build(config, workdir):
    start = pretrained_start(config.model, "bert", config.data.tokenizer_dir,
                             sequence_length=config.data.sequence_length)  # None: random weights
    train_records, eval_records = read_records(config, workdir)
    texts = [record[key] for record in train_records for key in ("text", "text_pair") if key in record]
    tokenizer, tokenizer_files = (start.tokenizer, start.tokenizer_files) if start else prepare_tokenizer(
        "wordpiece", texts, config.data.vocabulary_size, workdir, config.data.tokenizer_dir)
    labels = data.LabelVocabulary.from_labels([record["label"] for record in train_records])
    labels_path = os.path.join(workdir, LABELS_FILE)
    os.makedirs(workdir, exist_ok=True)
    labels.save(labels_path)

    special = tokenizer.special_token_ids
    options = dict(sequence_length=config.data.sequence_length, cls_id=special["cls"], sep_id=special["sep"],
                   pad_id=special["pad"], text_pair_key="text_pair" if config.data.text_pair_column else None,
                   batch_size=config.train.batch_size)
    train_set = data.classification_dataset(train_records, tokenizer, labels, shuffle=True, seed=config.train.seed,
                                            drop_remainder=True, **options)
    # Scored: every held-out example, one with a label unseen in training as wrong. The loss needs a logit for the
    # gold label, so its dataset has only the labels seen in training.
    gold, num_classes, unseen = data.held_out_label_ids(eval_records, labels)
    report_unseen_labels(unseen, len(eval_records), labels)
    eval_set = data.classification_dataset([r for r in eval_records if r["label"] not in unseen], tokenizer, labels,
                                           **options)
    to_predict = eval_set if not unseen else data.classification_dataset(
        [{**record, "label": labels.labels[0]} for record in eval_records], tokenizer, labels, **options)

    names = labels.labels + [f"{label} (unseen)" for label in unseen]  # ids as held_out_label_ids gives them

    def scores(model, results):
        logits = model.predict(to_predict, verbose=0)
        accuracy = metrics.accuracy(gold, logits)
        title = f"held-out confusion matrix: {len(gold)} examples, accuracy {accuracy:.3f}"
        return {"accuracy": accuracy,
                "macro_f1": metrics.f1_score(gold, logits, average="macro", num_classes=num_classes),
                "confusion_matrix": tasks.confusion_matrix_image(
                    metrics.confusion_matrix(gold, logits, num_classes=num_classes), names, title),
                "per_class_scores": tasks.per_class_table(
                    names, metrics.per_class_scores(gold, logits, num_classes=num_classes))}

    backbone = start.backbone if start else models.from_preset(config.model.preset, **{
        **config.model.preset_arguments(), "vocabulary_size": tokenizer.vocabulary_size,
        "max_sequence_length": config.data.sequence_length})
    model = models.BertClassifier(backbone, num_classes=len(labels), dropout=config.model.dropout)  # a new head
    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=[scores],
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files,
                       extra_files={LABELS_FILE: labels_path})


def main(argv=None):
    return run_recipe("bert_classify", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    main()
