"""BERT token classification (NER): `BertTokenClassifier` on CoNLL-format data.

Default data (offline): generated sentences with person, organisation and location
names in BIO tags (`kzoo.data.corpora`, 3,000 train / 750 test sentences), from
`ner/{train,test}.conll`; a WordPiece vocabulary is trained on the training words.
Bring your own with `--data.train_file=FILE.conll` and `--data.eval_file` (a token per
line, its tag in the last column, blank lines between sentences; BIO/IOB2 tags) and
optionally `--data.tokenizer_dir` (a BERT `vocab.txt`).

    kzoo train bert_ner                                       # defaults, ~2 minutes on 2 CPU cores
    python recipes/bert_ner.py --data.train_file=train.conll --data.eval_file=dev.conll --data.sequence_length=128
    kzoo train bert_pretrain && kzoo train bert_ner --model.checkpoint=runs/bert_pretrain/model.keras

Starting from a trained model: `--model.checkpoint=PATH` takes the backbone of a kzoo
`.keras` file (e.g. bert_pretrain's `BertPretrainer`; its tokenizer is the `tokenizer/`
folder beside it), a Hugging Face BERT, RoBERTa, XLM-R, DistilBERT or
ELECTRA directory or a keras-hub BERT preset directory,
and the checkpoint's tokenizer instead of a trained vocabulary (`--data.tokenizer_dir`
replaces it); the tagging head is new. The architecture comes with the
checkpoint: `--model.preset` does not apply, `--model.overrides` is refused, and
`--model.dropout` sets the new head's dropout only (the backbone keeps the
checkpoint's, built into its layers). A word the checkpoint's vocabulary cannot spell
becomes [UNK]; bert_pretrain's default vocabulary (trained on Python docstrings)
spells every word of the default sentences in ~2-2.5 pieces.

Each word's tag is predicted at its first sub-token (the other sub-tokens do not count
in the loss). The tag vocabulary is saved as `tokenizer/labels.json` beside
`model.keras`. Metrics: held-out accuracy of the words' tags (compiled) and entity-level
precision/recall/F1 (conlleval/seqeval) on the tags mapped back to words; TensorBoard also
shows them per entity type (a table) and three held-out sentences with gold and predicted
entities marked.
"""

import dataclasses
import os

import numpy as np

from kzoo import data, metrics, models
from kzoo.recipes import (
    FineTuningModelConfig,
    RecipeParts,
    default_corpus,
    prepare_tokenizer,
    pretrained_start,
    report_reading,
    run_recipe,
)
from kzoo.run_directory import LABELS_FILE
from kzoo.train import TrainConfig
from kzoo.visualize import tasks


@dataclasses.dataclass
class DataConfig:
    train_file: str = ""  # CoNLL file(s)/directory; empty: the default corpus
    eval_file: str = ""  # empty: the default corpus's test split (required with train_file)
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer, else train a WordPiece vocabulary
    vocabulary_size: int = 1000
    sequence_length: int = 48  # sub-tokens; words beyond it are scored as "O"
    eval_examples: int = 400  # held-out sentences scored at each evaluation (0: all)


@dataclasses.dataclass
class Config:
    model: FineTuningModelConfig = dataclasses.field(
        default_factory=lambda: FineTuningModelConfig(preset="bert_tiny", dropout=0.1))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=200, batch_size=32, learning_rate=1e-3, warmup_steps=20, decay="linear", eval_every=100))


def read_sentences(config, workdir):
    """(train, held-out) sentences: `(words, tags)` pairs."""
    if config.data.train_file:
        if not config.data.eval_file:
            raise ValueError("--data.train_file needs --data.eval_file (held-out sentences for the metrics).")
        paths = {"train": config.data.train_file, "test": config.data.eval_file}
    else:
        paths = default_corpus("ner", workdir)
    train, report = data.read_conll(paths["train"])
    report_reading("bert_ner", "training data", report)
    held_out, report = data.read_conll(paths["test"])  # a tag unseen in training is an error naming file and line
    report_reading("bert_ner", "held-out data", report)
    if not train or not held_out:
        raise ValueError(f"no sentences in {paths['train']} or {paths['test']}.")
    return train, held_out[:config.data.eval_examples or None]


def build(config, workdir):
    start = pretrained_start(config.model, "bert", config.data.tokenizer_dir,
                             sequence_length=config.data.sequence_length)  # None: random weights
    train_sentences, eval_sentences = read_sentences(config, workdir)
    tokenizer, tokenizer_files = (start.tokenizer, start.tokenizer_files) if start else prepare_tokenizer(
        "wordpiece", [" ".join(words) for words, _ in train_sentences], config.data.vocabulary_size, workdir,
        config.data.tokenizer_dir)
    tags = data.LabelVocabulary.from_labels([tag for _, sentence_tags in train_sentences for tag in sentence_tags])
    labels_path = os.path.join(workdir, LABELS_FILE)
    os.makedirs(workdir, exist_ok=True)
    tags.save(labels_path)

    special = tokenizer.special_token_ids
    options = dict(sequence_length=config.data.sequence_length, cls_id=special["cls"], sep_id=special["sep"],
                   pad_id=special["pad"], batch_size=config.train.batch_size)
    # (features, sub-token labels, weights): weight 1 on each word's first sub-token, 0 elsewhere.
    train_set = data.token_classification_dataset(train_sentences, tokenizer, tags, shuffle=True,
                                                  seed=config.train.seed, drop_remainder=True, **options)
    eval_set = data.token_classification_dataset(eval_sentences, tokenizer, tags, **options)
    first_subword = np.concatenate([weights.numpy() for _, _, weights in eval_set])
    gold = [sentence_tags for _, sentence_tags in eval_sentences]

    def entity_f1(model, results):
        logits = model.predict(eval_set, verbose=0)
        predicted = metrics.word_level_tags(logits, first_subword, tags, num_words=[len(t) for t in gold])
        scores = metrics.entity_scores(gold, predicted)
        return {"entity_precision": scores["precision"], "entity_recall": scores["recall"], "entity_f1": scores["f1"],
                "entity_scores": tasks.entity_table(scores),
                "examples": tasks.ner_examples([words for words, _ in eval_sentences], gold, predicted)}

    backbone = start.backbone if start else models.from_preset(config.model.preset, **{
        **config.model.preset_arguments(), "vocabulary_size": tokenizer.vocabulary_size,
        "max_sequence_length": config.data.sequence_length})
    model = models.BertTokenClassifier(backbone, num_classes=len(tags), dropout=config.model.dropout)  # a new head
    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=[entity_f1],
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files,
                       extra_files={LABELS_FILE: labels_path})


def main(argv=None):
    return run_recipe("bert_ner", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    main()
