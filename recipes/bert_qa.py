"""BERT extractive question answering (SQuAD v1.1): `BertSpanQA` predicts answer start and end.

Default data (offline): generated biographies with questions on birthplace, birth
year, field of study and employer (`kzoo.data.corpora`; `--data.corpus_size` 500
train / 125 test paragraphs, four questions each), from `qa/{train,test}.json` in
SQuAD format; a WordPiece vocabulary is trained on the training contexts and
questions. Bring your own
with `--data.train_file=train.json --data.eval_file=dev.json` (SQuAD json) and
optionally `--data.tokenizer_dir` (a BERT `vocab.txt`).

    kzoo train bert_qa                                        # defaults, ~2 minutes on 2 CPU cores
    python recipes/bert_qa.py --data.train_file=train-v1.1.json --data.eval_file=dev-v1.1.json \
        --data.sequence_length=384 --data.doc_stride=128 --model.preset=bert_base --train.steps=8000
    kzoo train bert_pretrain && kzoo train bert_qa --model.checkpoint=runs/bert_pretrain/model.keras

Starting from a trained model: `--model.checkpoint=PATH` takes the backbone of a kzoo
`.keras` file (e.g. bert_pretrain's `BertPretrainer`; its tokenizer is the `tokenizer/`
folder beside it), a Hugging Face BERT, RoBERTa, XLM-R, DistilBERT or
ELECTRA directory or a keras-hub BERT preset directory,
and the checkpoint's tokenizer instead of a trained vocabulary (`--data.tokenizer_dir`
replaces it); the span head is new. The architecture comes with the checkpoint:
`--model.preset` does not apply, `--model.overrides` is refused, and the dropout is the
checkpoint's (built into the backbone's layers; the span head has none), whatever
`--model.dropout` says. A word the checkpoint's vocabulary cannot spell becomes [UNK];
bert_pretrain's default vocabulary (trained on Python docstrings) spells every word of
the default paragraphs and questions in ~2-2.5 pieces.

Contexts longer than a window are split with `doc_stride`; a window without the answer
targets [CLS]. Metrics: held-out start/end token accuracy (compiled), and SQuAD v1.1
exact match and F1 of the answer text cut from the context at the best valid span
(start <= end, both in the context, at most `max_answer_length` tokens) of each
question's best window. TensorBoard also shows three held-out questions with the gold
and predicted answers highlighted in their contexts.
"""

import dataclasses
import sys

from kzoo import data, metrics, models
from kzoo.recipes import (
    FineTuningModelConfig,
    RecipeParts,
    default_corpus,
    prepare_tokenizer,
    pretrained_start,
    run_recipe,
)
from kzoo.train import TrainConfig
from kzoo.visualize import tasks


@dataclasses.dataclass
class DataConfig:
    train_file: str = ""  # SQuAD json; empty: the default corpus
    eval_file: str = ""  # empty: the default corpus's test split (required with train_file)
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer, else train a WordPiece vocabulary
    vocabulary_size: int = 1000
    sequence_length: int = 64  # [CLS] question [SEP] context window [SEP]
    doc_stride: int = 32
    max_query_length: int = 24
    max_answer_length: int = 16  # sub-tokens
    eval_examples: int = 300  # held-out questions scored at each evaluation (0: all)
    corpus_size: int = 500  # default corpus: generated training paragraphs (4 questions each)


@dataclasses.dataclass
class Config:
    model: FineTuningModelConfig = dataclasses.field(
        default_factory=lambda: FineTuningModelConfig(preset="bert_tiny", dropout=0.1))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=300, batch_size=32, learning_rate=1e-3, warmup_steps=30, decay="linear", eval_every=100))


def read_examples(config, workdir):
    """(train, held-out) `SquadExample`s; held-out questions without an answer are left out (v1.1 scoring)."""
    if config.data.train_file:
        if not config.data.eval_file:
            raise ValueError("--data.train_file needs --data.eval_file (held-out questions for the metrics).")
        paths = {"train": config.data.train_file, "test": config.data.eval_file}
    else:
        paths = default_corpus("qa", workdir, size=config.data.corpus_size)
    questions = data.read_squad(paths["test"])
    held_out = [example for example in questions if example.answer_text]
    if not held_out:
        raise ValueError(f"{paths['test']}: no answerable questions to score.")
    if len(held_out) < len(questions):
        print(f"kzoo train bert_qa: held-out data: left out {len(questions) - len(held_out)} of {len(questions)} "
              f"questions without an answer in {paths['test']} (SQuAD v1.1 scoring scores answers only).",
              file=sys.stderr)
    return data.read_squad(paths["train"]), held_out[:config.data.eval_examples or None]


def build(config, workdir):
    start = pretrained_start(config.model, "bert", config.data.tokenizer_dir,
                             sequence_length=config.data.sequence_length)  # None: random weights
    train_examples, eval_examples = read_examples(config, workdir)
    contexts = list(dict.fromkeys(example.context for example in train_examples))  # each paragraph once
    tokenizer, tokenizer_files = (start.tokenizer, start.tokenizer_files) if start else prepare_tokenizer(
        "wordpiece", contexts + [example.question for example in train_examples], config.data.vocabulary_size,
        workdir, config.data.tokenizer_dir)
    special = tokenizer.special_token_ids
    options = dict(sequence_length=config.data.sequence_length, cls_id=special["cls"], sep_id=special["sep"],
                   pad_id=special["pad"], doc_stride=config.data.doc_stride,
                   max_query_length=config.data.max_query_length)
    train_features = data.squad_features(train_examples, tokenizer, **options)
    eval_features = data.squad_features(eval_examples, tokenizer, **options)
    train_set = data.squad_dataset(train_features, batch_size=config.train.batch_size, shuffle=True,
                                   seed=config.train.seed, drop_remainder=True)
    eval_set = data.squad_dataset(eval_features, batch_size=config.train.batch_size)  # window order kept
    references = [example.answer_text for example in eval_examples]

    def squad_f1(model, results):
        logits = model.predict(eval_set, verbose=0)
        spans = metrics.squad_prediction_spans(eval_features, logits["start_logits"], logits["end_logits"],
                                               eval_examples, max_answer_length=config.data.max_answer_length)
        answers = [example.context[span[0]:span[1]] if span else ""  # as metrics.squad_predictions cuts them
                   for example, span in zip(eval_examples, spans, strict=True)]
        shown = [{"question": example.question, "context": example.context, "predicted_span": span,
                  "gold_span": (example.answer_start, example.answer_start + len(example.answer_text))}
                 for example, span in zip(eval_examples[:3], spans[:3], strict=True)]
        return {**metrics.squad_scores(answers, references), "examples": tasks.qa_examples(shown)}  # exact_match, f1

    backbone = start.backbone if start else models.from_preset(config.model.preset, **{
        **config.model.preset_arguments(), "vocabulary_size": tokenizer.vocabulary_size,
        "max_sequence_length": config.data.sequence_length})
    model = models.BertSpanQA(backbone)  # a new head
    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=[squad_f1],
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    return run_recipe("bert_qa", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    main()
