"""BERT pretraining: masked-LM + next-sentence prediction on sentence pairs.

Default data (offline): docstring prose of the Python standard library
(`kzoo.data.corpora`, ~77k words, a sentence a line), one document per module, every
tenth module held out; a WordPiece vocabulary is trained on the training documents.
Bring your own with `--data.train_files=DIR_OR_FILES` (plain text, one sentence a line;
one document a file, or documents separated by blank lines with
`--data.document_per=block`), `--data.eval_files` and optionally `--data.tokenizer_dir`
(a folder with a BERT `vocab.txt`).

    kzoo train bert_pretrain                                  # defaults, a few minutes on 2 CPU cores
    python recipes/bert_pretrain.py --model.preset=bert_small --data.sequence_length=128 --train.steps=5000

Pairs are `[CLS] A [SEP] B [SEP]`, B the true continuation or (half the time) text of
another document; 15% of the tokens are masked (static masking). The MLM loss is the
mean over real masked positions (padded prediction slots have sample weight 0).
Metrics: held-out MLM accuracy and NSP accuracy (compiled metrics), MLM perplexity;
TensorBoard also shows three held-out inputs with the model's top guesses at their
masked positions.
"""

import dataclasses

from kzoo import data, metrics, models
from kzoo.recipes import (
    RecipeModelConfig,
    RecipeParts,
    default_corpus,
    masked_lm_examples,
    prepare_tokenizer,
    report_reading,
    run_recipe,
    split_holdout,
)
from kzoo.train import TrainConfig


@dataclasses.dataclass
class DataConfig:
    train_files: str = ""  # comma-separated files/directories; empty: the default corpus
    eval_files: str = ""  # empty: every tenth training document
    document_per: str = "file"  # file | block (blank-line separated documents)
    tokenizer_dir: str = ""  # empty: train a WordPiece vocabulary
    vocabulary_size: int = 2000
    sequence_length: int = 64
    max_predictions: int = 10  # masked positions per pair (>= mask_rate * sequence_length)
    mask_rate: float = 0.15
    dupe_factor: int = 5  # copies of the training pairs, each with its own pairing and masks


@dataclasses.dataclass
class Config:
    model: RecipeModelConfig = dataclasses.field(
        default_factory=lambda: RecipeModelConfig(preset="bert_tiny", dropout=0.1))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=32, learning_rate=2e-3, warmup_steps=60, decay="linear", eval_every=200,
        checkpoint_every=200))


def read_documents(config, workdir):
    """(train, held-out) documents, each a list of sentence strings."""
    files, per = config.data.train_files, config.data.document_per
    paths = files.split(",") if files else [default_corpus("lm", workdir)["documents"]]
    documents, report = data.read_text_documents(paths, document_per=per)
    report_reading("bert_pretrain", "training data", report)
    if config.data.eval_files:
        held_out, report = data.read_text_documents(config.data.eval_files.split(","), document_per=per)
        report_reading("bert_pretrain", "held-out data", report)
        train = documents
    else:
        train, held_out = split_holdout(documents)
    if len(train) < 2 or len(held_out) < 2:
        raise ValueError(f"next-sentence pairs need at least 2 train and 2 held-out documents in {paths}.")
    return train, held_out


def mlm_perplexity(model, results):
    """Evaluator: perplexity of the masked tokens from the held-out MLM cross-entropy."""
    return {"mlm_perplexity": metrics.perplexity(results["mlm_logits_loss"])} if "mlm_logits_loss" in results else {}


def build(config, workdir):
    train_docs, eval_docs = read_documents(config, workdir)
    tokenizer, tokenizer_files = prepare_tokenizer("wordpiece", [" ".join(doc) for doc in train_docs],
                                                   config.data.vocabulary_size, workdir, config.data.tokenizer_dir)
    special = tokenizer.special_token_ids
    options = dict(sequence_length=config.data.sequence_length, mask_rate=config.data.mask_rate,
                   max_predictions_per_sequence=config.data.max_predictions, vocabulary_size=tokenizer.vocabulary_size,
                   cls_id=special["cls"], sep_id=special["sep"], pad_id=special["pad"], mask_id=special["mask"],
                   batch_size=config.train.batch_size)
    # Each dataset yields (features, targets, sample_weights): the MLM weights are 0 on padded mask slots.
    # BERT's dupe_factor: the masks are static per copy, so several copies avoid memorizing one masking.
    train_set = data.bert_pretraining_dataset(train_docs, tokenizer, shuffle=True, seed=config.train.seed,
                                              dupe_factor=config.data.dupe_factor, **options)
    eval_set = data.bert_pretraining_dataset(eval_docs, tokenizer, seed=config.train.seed + 1, **options)

    backbone = models.from_preset(config.model.preset, **{
        **config.model.preset_arguments(), "vocabulary_size": tokenizer.vocabulary_size,
        "max_sequence_length": config.data.sequence_length})
    model = models.BertPretrainer(backbone)
    features = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    example = {name: features[name] for name in ("token_ids", "segment_ids", "padding_mask")}
    shown = masked_lm_examples(next(iter(eval_set.take(1))), tokenizer)  # the same held-out examples every time
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=[mlm_perplexity, shown],
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    return run_recipe("bert_pretrain", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    main()
