"""Seq2seq summarization: a T5-style encoder-decoder trained with teacher forcing.

Default data (offline): `kzoo.data.corpora`'s generated match reports (who played
whom where, the score, and one to three filler sentences), each summarized as
"<winner> beat <loser> <high> - <low> ." (3,000 training pairs, 750 test pairs in
`summarization/{train,test}.tsv`). One SentencePiece vocabulary is trained on documents
and summaries together. It is BPE by default: the corpus has only ~90 distinct words,
so a unigram vocabulary cannot exceed ~130 pieces and splits the team names into
letters, which t5_tiny then copies poorly (ROUGE stayed at that of a constant summary
after 800 steps); 320 BPE pieces make every word one piece. For real data use the T5
kind and a real size, e.g. `--data.vocabulary_kind=sentencepiece_unigram
--data.vocabulary_size=8000`. Bring your own with `--data.train_files=FILES` (csv/tsv
with a header; the columns are `--data.source_column`/`--data.target_column`),
optionally `--data.eval_files` (else every tenth training pair is held out) and
`--data.tokenizer_dir` (a `spiece.model`).

    python recipes/seq2seq_summarize.py                      # defaults, ~3 minutes on 2 CPU cores
    python recipes/seq2seq_summarize.py --data.train_files=news.tsv --data.source_column=article \\
        --data.vocabulary_kind=sentencepiece_unigram --data.vocabulary_size=8000 \\
        --data.encoder_sequence_length=512 --data.decoder_sequence_length=64
    python recipes/seq2seq_summarize.py --model.checkpoint=path/to/t5-small --data.train_files=news.tsv \\
        --data.source_column=article --data.encoder_sequence_length=512 --data.decoder_sequence_length=64

Starting from a trained model: `--model.checkpoint=PATH` takes the encoder-decoder of
a kzoo `.keras` file (a `Seq2SeqLM`; its tokenizer is the `tokenizer/` folder beside
it) or of a Hugging Face T5, mT5, BART, mBART or Marian directory, its LM head (and
Marian's logits bias) included, and the checkpoint's
tokenizer instead of a trained vocabulary (`--data.tokenizer_dir` replaces it). The
architecture comes with the checkpoint: `--model.preset` does not apply,
`--model.overrides` is refused, and the dropout is the checkpoint's (built into its
layers), whatever `--model.dropout` says. The sequence lengths must fit the model's
positions (T5's relative positions take any length).

Metrics: held-out loss and token accuracy (teacher forcing); ROUGE-1/2/L F-measures of
greedy summaries of the first `--data.decode_examples` held-out documents, with a few
samples logged as text.
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
    source_column: str = "document"
    target_column: str = "summary"
    tokenizer_dir: str = ""  # empty: the checkpoint's tokenizer, else a SentencePiece one trained on sources + targets
    vocabulary_kind: str = "sentencepiece"  # BPE pieces (see above), or "sentencepiece_unigram" (T5)
    vocabulary_size: int = 320
    encoder_sequence_length: int = 64  # tokens, EOS included; longer texts are truncated
    decoder_sequence_length: int = 16
    decode_examples: int = 300  # held-out pairs summarized greedily at every evaluation (ROUGE)


@dataclasses.dataclass
class Config:
    model: FineTuningModelConfig = dataclasses.field(
        default_factory=lambda: FineTuningModelConfig(preset="t5_tiny", dropout=0.0))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=32, learning_rate=3e-3, warmup_steps=60, decay="cosine", eval_every=200,
        checkpoint_every=200))


def build(config, workdir):
    start = pretrained_start(config.model, "seq2seq", config.data.tokenizer_dir, exact_vocabulary=False,
                             encoder_sequence_length=config.data.encoder_sequence_length,
                             decoder_sequence_length=config.data.decoder_sequence_length)  # None: random weights
    train_pairs, eval_pairs = read_text_pairs("summarization", config.data, workdir)
    tokenizer, tokenizer_files = (start.tokenizer, start.tokenizer_files) if start else prepare_tokenizer(
        config.data.vocabulary_kind, [text for pair in train_pairs for text in pair], config.data.vocabulary_size,
        workdir, config.data.tokenizer_dir)
    pad, eos = tokenizer.pad_id, tokenizer.special_token_ids["eos"]
    options = dict(encoder_sequence_length=config.data.encoder_sequence_length,
                   decoder_sequence_length=config.data.decoder_sequence_length, pad_id=pad, eos_id=eos,
                   decoder_start_id=pad, batch_size=config.train.batch_size)
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
            config.data.decoder_sequence_length, score=metrics.rouge)],
        attention_example=example, tokenizer=tokenizer, tokenizer_files=tokenizer_files)


def main(argv=None):
    run_recipe("seq2seq_summarize", Config(), build, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
