"""Seq2seq translation: a T5-style encoder-decoder trained with teacher forcing.

Default data (offline): `kzoo.data.corpora`'s generated translation task, English to an
invented language with its own lexicon, adjectives after nouns and the verb last
(6,000 training pairs, 1,500 test pairs in `translation/{train,test}.tsv`). One
SentencePiece unigram vocabulary is trained on sources and targets together; the
default corpus has only ~75 distinct words, so the default size is small (96): raise
`--data.vocabulary_size` (e.g. 8000) for real data. Bring your own with
`--data.train_files=FILES` (csv/tsv with a header; the columns are
`--data.source_column`/`--data.target_column`), optionally `--data.eval_files` (else
every tenth training pair is held out) and `--data.tokenizer_dir` (a `spiece.model`).

    python recipes/seq2seq_translate.py                      # defaults, ~4-5 minutes on 2 CPU cores
    python recipes/seq2seq_translate.py --model.preset=t5_small --data.train_files=my.tsv --data.vocabulary_size=8000
    kzoo train seq2seq_translate && kzoo train seq2seq_translate --data.train_files=more.tsv \\
        --model.checkpoint=runs/seq2seq_translate/model.keras --train.output_dir=runs/translate_more

Starting from a trained model: `--model.checkpoint=PATH` takes the encoder-decoder of
a kzoo `.keras` file (a `Seq2SeqLM`; its tokenizer is the `tokenizer/` folder beside
it) or of a Hugging Face T5, mT5, BART, mBART or Marian directory, its LM head (and
Marian's logits bias) included, and the checkpoint's
tokenizer instead of a trained vocabulary (`--data.tokenizer_dir` replaces it). The
architecture comes with the checkpoint: `--model.preset` does not apply,
`--model.overrides` is refused, and the dropout is the checkpoint's (built into its
layers), whatever `--model.dropout` says. The sequence lengths must fit the model's
positions (T5's relative positions take any length).

Metrics: held-out loss and token accuracy (teacher forcing); corpus BLEU (a fraction,
on whitespace tokens, with sacrebleu's default "exp" smoothing) of greedy translations
of the first `--data.decode_examples` held-out sources, a few of them logged as text.
"""

import dataclasses
import sys
import typing

from kzoo import data, metrics, models
from kzoo.recipes import (
    FineTuningModelConfig,
    RecipeParts,
    greedy_seq2seq_evaluator,
    prepare_tokenizer,
    pretrained_start,
    read_text_pairs,
    run_recipe,
)
from kzoo.train import TrainConfig


@dataclasses.dataclass
class DataConfig:
    RENAMED_KEYS: typing.ClassVar[dict] = {"source_length": "encoder_sequence_length",
                                           "target_length": "decoder_sequence_length"}

    train_files: str = ""  # comma-separated csv/tsv files or directories; empty: the default corpus
    eval_files: str = ""  # empty: the default test split, or every tenth training pair for user data
    source_column: str = "source"
    target_column: str = "target"
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer, else a SentencePiece one trained on sources + targets
    vocabulary_kind: str = "sentencepiece_unigram"  # or "sentencepiece" (BPE pieces)
    vocabulary_size: int = 96
    encoder_sequence_length: int = 32  # tokens, EOS included; longer texts are truncated
    decoder_sequence_length: int = 32
    decode_examples: int = 300  # held-out pairs translated greedily at every evaluation (BLEU)


@dataclasses.dataclass
class Config:
    model: FineTuningModelConfig = dataclasses.field(
        default_factory=lambda: FineTuningModelConfig(preset="t5_tiny", dropout=0.0))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=64, learning_rate=3e-3, warmup_steps=60, decay="cosine", eval_every=200,
        checkpoint_every=200))


def bleu(hypotheses, references):
    """Corpus BLEU (a fraction) with sacrebleu's default "exp" smoothing."""
    return {"bleu": metrics.corpus_bleu(hypotheses, references, smooth="exp")["bleu"]}


def build(config, workdir):
    start = pretrained_start(config.model, "seq2seq", config.data.tokenizer_dir, exact_vocabulary=False,
                             encoder_sequence_length=config.data.encoder_sequence_length,
                             decoder_sequence_length=config.data.decoder_sequence_length)  # None: random weights
    train_pairs, eval_pairs = read_text_pairs("translation", config.data, workdir)
    tokenizer, tokenizer_files = (start.tokenizer, start.tokenizer_files) if start else prepare_tokenizer(
        config.data.vocabulary_kind, [text for pair in train_pairs for text in pair], config.data.vocabulary_size,
        workdir, config.data.tokenizer_dir)
    pad, eos = tokenizer.pad_id, tokenizer.special_token_ids["eos"]
    options = dict(encoder_sequence_length=config.data.encoder_sequence_length,
                   decoder_sequence_length=config.data.decoder_sequence_length, pad_id=pad, eos_id=eos,
                   decoder_start_id=pad, batch_size=config.train.batch_size,
                   target_tokenizer=getattr(tokenizer, "target_tokenizer", None))  # Marian: target.spm for labels
    train_set = data.seq2seq_dataset(train_pairs, tokenizer, shuffle=True, seed=config.train.seed,
                                     drop_remainder=True, **options)
    eval_set = data.seq2seq_dataset(eval_pairs, tokenizer, **options)

    if start:  # the checkpoint's LM: the backbone's head (tied or not) and its logits bias (Marian) if any
        model = start.model if isinstance(start.model, models.Seq2SeqLM) else models.Seq2SeqLM(start.backbone)
    else:
        backbone = models.from_preset(config.model.preset, **{
            **config.model.preset_arguments(), "vocabulary_size": tokenizer.vocabulary_size,
            "max_sequence_length": max(config.data.encoder_sequence_length, config.data.decoder_sequence_length)})
        model = models.Seq2SeqLM(backbone)
    example = next(iter(eval_set.unbatch().batch(1).take(1)))[0]
    return RecipeParts(
        model=model, train_dataset=train_set, eval_dataset=eval_set,
        evaluators=[greedy_seq2seq_evaluator(
            eval_pairs[:config.data.decode_examples], tokenizer, config.data.encoder_sequence_length,
            config.data.decoder_sequence_length, score=bleu)],
        attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    run_recipe("seq2seq_translate", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
