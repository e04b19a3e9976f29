"""GPT pretraining: next-token prediction on packed documents.

Default data (offline): docstring prose of the Python standard library
(`kzoo.data.corpora`, ~77k words), one document per module, every tenth module held
out; a 2,048-piece byte-fallback-free SentencePiece BPE vocabulary is trained on the
training documents. Bring your own with `--data.train_files=DIR_OR_FILES` (plain text,
one sentence a line, one document a file) and optionally `--data.tokenizer_dir`.

    kzoo train gpt_pretrain                                  # defaults, ~2 minutes on 2 CPU cores
    python recipes/gpt_pretrain.py --train.steps=2000 --model.preset=gpt2_small --data.sequence_length=512
    kzoo train gpt_pretrain --model.fused_loss --train.precision=mixed_bfloat16  # chunked loss, bf16

Metrics: held-out loss and perplexity; sample continuations of fixed prompts as text.
"""

import dataclasses
import sys

from kzoo import data, models
from kzoo.recipes import (
    RecipeModelConfig,
    RecipeParts,
    default_corpus,
    perplexity,
    prepare_tokenizer,
    report_reading,
    run_recipe,
    sample_generations,
    split_holdout,
)
from kzoo.train import TrainConfig

PROMPTS = ("Return a new", "The default value is", "This function", "If the file")


@dataclasses.dataclass
class DataConfig:
    train_files: str = ""  # comma-separated files/directories; empty: the default corpus
    eval_files: str = ""  # empty: every tenth training document
    tokenizer_dir: str = ""  # empty: train a SentencePiece BPE vocabulary
    vocabulary_size: int = 2048
    sequence_length: int = 64


@dataclasses.dataclass
class GPTModelConfig(RecipeModelConfig):
    # Chunked cross-entropy: training never forms the (batch, length, vocabulary) logits (GPTCausalLM docs).
    fused_loss: bool = False


@dataclasses.dataclass
class Config:
    model: GPTModelConfig = dataclasses.field(default_factory=lambda: GPTModelConfig(preset="gpt_tiny",
                                                                                     dropout=0.1))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=400, batch_size=32, learning_rate=2e-3, warmup_steps=40, decay="cosine", eval_every=100))


def read_documents(config, workdir):
    """(train, held-out) documents as strings, one string per document."""
    paths = config.data.train_files.split(",") if config.data.train_files else None
    paths = paths or [default_corpus("lm", workdir)["documents"]]
    documents, report = data.read_text_documents(paths)
    report_reading("gpt_pretrain", "training data", report)
    if config.data.eval_files:
        held_out, report = data.read_text_documents(config.data.eval_files.split(","))
        report_reading("gpt_pretrain", "held-out data", report)
        train = documents
    else:
        train, held_out = split_holdout(documents)
    if not train or not held_out:
        raise ValueError(f"no documents found in {paths}: pass --data.train_files with text files.")
    return [" ".join(doc) for doc in train], [" ".join(doc) for doc in held_out]


def build(config, workdir):
    train_texts, eval_texts = read_documents(config, workdir)
    tokenizer, tokenizer_files = prepare_tokenizer("sentencepiece", train_texts, config.data.vocabulary_size,
                                                   workdir, config.data.tokenizer_dir)
    eos = tokenizer.special_token_ids["eos"]
    options = dict(sequence_length=config.data.sequence_length, eos_id=eos, batch_size=config.train.batch_size,
                   start_ids=getattr(tokenizer, "start_ids", ()))  # a Llama tokenizer's BOS, as generate's prompts
    train_set = data.causal_lm_dataset(train_texts, tokenizer, shuffle=True, seed=config.train.seed, **options)
    eval_set = data.causal_lm_dataset(eval_texts, tokenizer, **options)

    backbone = models.from_preset(config.model.preset, vocabulary_size=tokenizer.vocabulary_size,
                                  **config.model.preset_arguments())
    model = models.GPTCausalLM(backbone, fused_loss=config.model.fused_loss)
    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    evaluators = [perplexity, sample_generations(PROMPTS, tokenizer)]
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=evaluators,
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    run_recipe("gpt_pretrain", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
