"""GPT fine-tuning: continue next-token training of an imported causal LM on new text.

Checkpoint (`--model.checkpoint=PATH`): a local Hugging Face GPT-2, Llama, Mistral or
Qwen2 directory (`config.json` + `model.safetensors` + its tokenizer files: `vocab.json`/
`merges.txt`, `tokenizer.json` or `tokenizer.model`), a local keras-hub GPT-2 preset
directory, or a kzoo `.keras` file whose tokenizer files are in the `tokenizer/` folder
beside it (as every kzoo recipe saves them). Each document starts with the tokenizer's
start ids (Llama's BOS, as `generate` starts a prompt) and ends with its end token. Default:
`runs/gpt_pretrain/model.keras`, the output of `kzoo train gpt_pretrain`.

Default data (offline): the documents of `kzoo.data.corpora`'s generated match
reports (summarization corpus, 3,000 training and 750 held-out documents) as plain
text: a domain shift from the docstring prose gpt_pretrain trains on. Bring your own
with `--data.train_files=DIR_OR_FILES` (plain text, one sentence a line, one document
a file) and optionally `--data.eval_files` (else every tenth document is held out).
The tokenizer is the checkpoint's own (override with `--data.tokenizer_dir`).

    python recipes/gpt_pretrain.py && python recipes/gpt_finetune.py   # ~3 + ~2 minutes on 2 CPU cores
    python recipes/gpt_finetune.py --model.checkpoint=path/to/gpt2 --data.train_files=my_texts/ --train.batch_size=8

Metrics: held-out loss and perplexity, with those of the checkpoint before fine-tuning
(`base_loss`, `base_perplexity`, measured once before the first step on the same
held-out batches); continuations of a few held-out openings, before and now, as text.
"""

import dataclasses
import os
import sys

import keras

from kzoo import data, metrics, models
from kzoo.recipes import (
    AdapterOptions,
    RecipeParts,
    default_corpus,
    load_pretrained,
    report_reading,
    run_recipe,
    split_holdout,
)
from kzoo.run_directory import RunDirectory
from kzoo.train import ConfigError, TrainConfig
from kzoo.visualize.tasks import escape_markdown, generation_settings

DEFAULT_CHECKPOINT = RunDirectory.default("gpt_pretrain").model


@dataclasses.dataclass
class CheckpointChoice(AdapterOptions):
    """The `model` section: which trained model to fine-tune (the architecture comes with it), and the adapter
    options (`AdapterOptions`: LoRA, a quantized base)."""

    checkpoint: str = ""  # HF GPT-2/Llama/Mistral/Qwen2 dir, keras-hub preset dir or .keras; empty: gpt_pretrain's


@dataclasses.dataclass
class DataConfig:
    train_files: str = ""  # comma-separated text files/directories; empty: the default corpus' documents
    eval_files: str = ""  # empty: the default test documents, or every tenth training document
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer files
    sequence_length: int = 64
    prompt_words: int = 8  # words of each held-out document used as a prompt for the samples
    sample_tokens: int = 32  # tokens generated per sample


@dataclasses.dataclass
class Config:
    model: CheckpointChoice = dataclasses.field(default_factory=CheckpointChoice)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=150, batch_size=32, learning_rate=5e-4, warmup_steps=15, decay="cosine", eval_every=75,
        checkpoint_every=75))


def load_checkpoint(config):
    """The `kzoo.recipes.Pretrained` to fine-tune: `--model.checkpoint` (default: gpt_pretrain's model.keras), a
    `GPTCausalLM`, with its tokenizer (or `--data.tokenizer_dir`'s)."""
    path = config.model.checkpoint
    if not path and not os.path.exists(DEFAULT_CHECKPOINT):
        raise ConfigError(f"no checkpoint at {DEFAULT_CHECKPOINT}: run `kzoo train gpt_pretrain` first or pass "
                          "--model.checkpoint=PATH (HF GPT-2/Llama/Qwen2 dir, keras-hub preset dir or .keras file).")
    pretrained = load_pretrained(path or DEFAULT_CHECKPOINT, "gpt", config.data.tokenizer_dir,
                                 sequence_length=config.data.sequence_length)
    if not isinstance(pretrained.model, models.GPTCausalLM):
        raise ConfigError(f"model.checkpoint {pretrained.path!r} holds a {type(pretrained.model).__name__}, "
                          "not a GPTCausalLM.")
    return pretrained


def read_documents(config, workdir):
    """(train, held-out) documents as strings."""
    if config.data.train_files:
        train, report = data.read_text_documents(config.data.train_files.split(","))
        report_reading("gpt_finetune", "training data", report)
        train = [" ".join(document) for document in train]
        held_out = None
    else:
        corpus = default_corpus("summarization", workdir)
        train = [record["document"] for record in data.read_csv(corpus["train"], ["document"])[0]]
        held_out = [record["document"] for record in data.read_csv(corpus["test"], ["document"])[0]]
    if config.data.eval_files:
        held_out, report = data.read_text_documents(config.data.eval_files.split(","))
        report_reading("gpt_finetune", "held-out data", report)
        held_out = [" ".join(document) for document in held_out]
    if held_out is None:
        train, held_out = split_holdout(train)
    if not train or not held_out:
        raise ValueError(f"no documents found in {config.data.train_files}: pass --data.train_files with text files.")
    return train, held_out


def held_out_loss(model, dataset):
    """Mean of the per-batch held-out losses, computed as the training loop's evaluation does.

    The forward pass is Keras' compiled `predict_on_batch` (one `jax.jit` / `tf.function` trace per batch shape) on
    NumPy batches: under JAX an eager call compiles every op on its own (3.6 s against 0.7 s for the first batch of
    gpt_test).
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    values = [float(loss(y, model.predict_on_batch(x), sample_weight=w)) for x, y, w in dataset.as_numpy_iterator()]
    return sum(values) / len(values)


def generation_options(config):
    """The `generate` settings of the samples (shown with them in TensorBoard)."""
    return {"strategy": "greedy", "max_new_tokens": config.data.sample_tokens}


def continuations(model, tokenizer, prompts, config):
    return model.generate(prompts, tokenizer=tokenizer, **generation_options(config))


def build(config, workdir):
    pretrained = load_checkpoint(config)  # its tokenizer has exactly as many ids as the model
    model, tokenizer, tokenizer_files = pretrained.model, pretrained.tokenizer, pretrained.tokenizer_files
    train_texts, eval_texts = read_documents(config, workdir)
    eos = tokenizer.special_token_ids.get("eos")
    if eos is None:
        raise ConfigError(f"the tokenizer ({tokenizer.vocabulary_size} ids) has no end token, which separates the "
                          "documents: pass the checkpoint's own with --data.tokenizer_dir.")
    options = dict(sequence_length=config.data.sequence_length, eos_id=eos, batch_size=config.train.batch_size,
                   start_ids=getattr(tokenizer, "start_ids", ()))  # a Llama tokenizer's BOS, as generate's prompts
    train_set = data.causal_lm_dataset(train_texts, tokenizer, shuffle=True, seed=config.train.seed, **options)
    eval_set = data.causal_lm_dataset(eval_texts, tokenizer, **options)

    # The checkpoint as it is, before the first step: the baseline the evaluations are compared with.
    base_loss = held_out_loss(model, eval_set.take(config.train.eval_steps or -1))
    prompts = [" ".join(text.split()[:config.data.prompt_words]) for text in eval_texts[:3]]
    before = continuations(model, tokenizer, prompts, config)

    def evaluate(model, results):
        now = continuations(model, tokenizer, prompts, config)
        samples = [f"**{escape_markdown(p)}** …  \nbefore: {escape_markdown(b)}  \nnow: {escape_markdown(n)}"
                   for p, b, n in zip(prompts, before, now, strict=True)]
        settings = generation_settings({**generation_options(config), "stop at": "end token"})
        return {"perplexity": metrics.perplexity(results["loss"]), "base_loss": base_loss,
                "base_perplexity": metrics.perplexity(base_loss), "samples": "\n\n".join([*samples, settings])}

    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    return RecipeParts(model=model, train_dataset=train_set, eval_dataset=eval_set, evaluators=[evaluate],
                       attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    run_recipe("gpt_finetune", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
