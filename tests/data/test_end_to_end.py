"""Default corpus -> trained vocabulary -> kzoo.text tokenizer -> kzoo.data pipeline -> model.

Shows the offline classification corpus is learnable from its text alone: a tiny BERT
goes from chance to well above it in six short epochs.
"""

import keras
import pytest

from kzoo import data, models
from kzoo.data import corpora
from kzoo.text import tokenizer_from_files, train_wordpiece


@pytest.mark.slow
def test_tiny_bert_learns_the_default_classification_corpus(tmp_path):
    keras.utils.set_random_seed(0)
    paths = corpora.write_default_corpus("classification", str(tmp_path), seed=0, size=2000)
    train, _ = data.read_csv(paths["train"], {"text": "text", "label": "label"})
    test, _ = data.read_csv(paths["test"], {"text": "text", "label": "label"})
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(record["text"] for record in train))
    train_wordpiece([str(texts)], 400, str(tmp_path / "vocab"))
    tokenizer = tokenizer_from_files({"vocab.txt": str(tmp_path / "vocab" / "vocab.txt")})
    special = tokenizer.special_token_ids
    labels = data.LabelVocabulary.from_labels([record["label"] for record in train])
    options = dict(sequence_length=32, cls_id=special["cls"], sep_id=special["sep"], pad_id=special["pad"])
    train_set = data.classification_dataset(train, tokenizer, labels, batch_size=32, shuffle=True, seed=0, **options)
    test_set = data.classification_dataset(test, tokenizer, labels, batch_size=64, **options)

    backbone = models.from_preset("bert_test", vocabulary_size=tokenizer.vocabulary_size, max_sequence_length=32)
    model = models.BertClassifier(backbone, num_classes=len(labels))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    _, accuracy_before = model.evaluate(test_set, verbose=0)
    model.fit(train_set, epochs=6, verbose=0)
    loss_after, accuracy_after = model.evaluate(test_set, verbose=0)
    assert accuracy_before < 0.6  # two balanced classes: chance is 0.5
    assert accuracy_after > 0.75, (accuracy_before, accuracy_after, loss_after)
