"""One training step of each tiny kzoo model on the pipelines' output.

Model tracing dominates (10-30 s each on a CPU), so only the BERT pretrainer (dict targets and
sample weights) runs in the fast tier; the rest are `slow`.
"""

import keras
import numpy as np
import pytest

from kzoo import data, models
from tests.data.helpers import CLS, EOS, MASK, PAD, SEP, WhitespaceTokenizer, corpus, wordpiece

VOCAB = 128  # the *_test presets


def _fit_one_step(model, dataset):
    # XLA on TF costs ~10 s of compilation per model here; JAX needs jit to avoid op-by-op dispatch.
    model.compile(jit_compile=keras.backend.backend() == "jax")
    history = model.fit(dataset.take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_bert_pretrainer_fits():
    dataset = data.bert_pretraining_dataset(
        corpus(num_documents=10), WhitespaceTokenizer(), sequence_length=32, max_predictions_per_sequence=5,
        vocabulary_size=VOCAB, cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK, batch_size=4,
    )
    _fit_one_step(models.BertPretrainer(models.from_preset("bert_test")), dataset)


@pytest.mark.slow
def test_gpt_causal_lm_fits():
    texts = [" ".join(document) for document in corpus(num_documents=10)]
    dataset = data.causal_lm_dataset(texts, WhitespaceTokenizer(), sequence_length=16, eos_id=EOS, batch_size=4)
    _fit_one_step(models.GPTCausalLM(models.from_preset("gpt_test")), dataset)


@pytest.mark.slow
def test_seq2seq_lm_fits_on_span_corruption():
    texts = [" ".join(document) for document in corpus(num_documents=10)]
    dataset = data.span_corruption_dataset(texts, WhitespaceTokenizer(), raw_length=30, vocabulary_size=VOCAB,
                                           pad_id=PAD, eos_id=EOS, decoder_start_id=PAD, batch_size=4)
    _fit_one_step(models.Seq2SeqLM(models.from_preset("t5_test")), dataset)


@pytest.mark.slow
def test_classifier_tagger_and_span_qa_fit():
    backbone = models.from_preset("bert_test")
    records = [{"text": "the cat sat", "label": "a"}, {"text": "a dog ran", "label": "b"}] * 2
    labels = data.LabelVocabulary.from_labels(r["label"] for r in records)
    args = dict(sequence_length=16, cls_id=CLS, sep_id=SEP, pad_id=PAD, batch_size=2)
    _fit_one_step(models.BertClassifier(backbone, num_classes=len(labels)),
                  data.classification_dataset(records, WhitespaceTokenizer(), labels, **args))
    sentences = [(["the", "cats", "played"], ["O", "B-X", "O"])] * 2
    tags = data.LabelVocabulary.from_labels(["O", "B-X"])
    _fit_one_step(models.BertTokenClassifier(backbone, num_classes=2),
                  data.token_classification_dataset(sentences, wordpiece(), tags, **args))
    context = "the cat sat on the mat , w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    examples = [data.SquadExample("q", "who sat?", context, "cat", 4)] * 2
    features = data.squad_features(examples, wordpiece(), sequence_length=16, cls_id=CLS, sep_id=SEP, pad_id=PAD,
                                   doc_stride=4)
    _fit_one_step(models.BertSpanQA(backbone), data.squad_dataset(features, batch_size=2))
