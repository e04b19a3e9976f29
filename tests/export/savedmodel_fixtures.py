"""Tiny random models and tokenizers trained on generated text, shared by the SavedModel export tests.

The vocabularies are trained on `tests.text.sentences.corpus_lines()` (no downloads). Model weights are
randomized with large values (`tests.generate.helpers.randomize`) so predictions vary between tokens and argmax
margins are wide: a float rounding difference cannot flip a label, a tag or a generated token.
"""

from kzoo import models, text
from tests.generate import helpers
from tests.text.sentences import corpus_lines

WORDPIECE_SIZE = 300
SENTENCEPIECE_SIZE = 300
TAGS = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
CLASSES = ["negative", "neutral", "positive"]


def tokenizers(root):
    """`{"wordpiece": (tokenizer, files), "sentencepiece": (tokenizer, files)}` trained under `root`."""
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
    vocab_txt = text.train_wordpiece([corpus], WORDPIECE_SIZE, root / "wordpiece", lowercase=True)
    spiece = text.train_sentencepiece([corpus], SENTENCEPIECE_SIZE, root / "sentencepiece")
    return {
        "wordpiece": (text.WordPieceTokenizer.from_files(vocab_txt), {"vocab.txt": str(vocab_txt)}),
        "sentencepiece": (text.SentencePieceTokenizer.from_files(spiece), {"spiece.model": str(spiece)}),
    }


def _bert_backbone(vocabulary_size, use_pooler=True):
    return models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
        max_sequence_length=64, dropout=0.0, attention_dropout=0.0, use_pooler=use_pooler,
    )


def build(kind, vocabulary_size, seed=0):
    """A tiny randomized model of `kind`."""
    if kind == "classifier":
        model = models.BertClassifier(_bert_backbone(vocabulary_size), num_classes=len(CLASSES), dropout=0.0)
    elif kind == "tagger":
        model = models.BertTokenClassifier(_bert_backbone(vocabulary_size), num_classes=len(TAGS), dropout=0.0)
    elif kind == "qa":
        model = models.BertSpanQA(_bert_backbone(vocabulary_size))
    elif kind == "encoder":
        model = _bert_backbone(vocabulary_size)
    elif kind == "pretrainer":
        model = models.BertPretrainer(_bert_backbone(vocabulary_size))
    elif kind == "encoder_no_pooler":  # a BertForMaskedLM file's backbone: no pooled_output
        model = _bert_backbone(vocabulary_size, use_pooler=False)
    elif kind == "pretrainer_mlm":  # BertForMaskedLM: no pooler, no next-sentence head, no nsp_logits
        model = models.BertPretrainer(_bert_backbone(vocabulary_size, use_pooler=False), next_sentence_prediction=False)
    elif kind == "gpt":
        return helpers.tiny_gpt("learned", vocabulary_size=vocabulary_size, seed=seed, max_sequence_length=48)
    elif kind == "t5":
        model = helpers.tiny_seq2seq("t5", vocabulary_size=vocabulary_size, seed=seed)
        # Smaller weights than the generation tests' 0.5: at 0.5 the untied T5 logits reach ~9 and float32
        # rounding differs by ~1e-5 of that between any two graph optimizations (eager vs tf.function: 7.6e-6).
        helpers.randomize(model, seed=seed, std=0.3)
        return model
    else:
        raise ValueError(kind)
    helpers.randomize(model, seed=seed)
    return model
