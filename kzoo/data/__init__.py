"""kzoo.data: readers and per-task `tf.data` pipelines producing the inputs of kzoo models.

Readers (`kzoo.data.readers`) return Python records and a `ReadReport`; pipelines take
records plus a tokenizer (any object whose `tokenize` maps a 1-D `tf.string` tensor to
ragged int ids) and the special ids, and return batched `tf.data.Dataset`s of
`(features, targets[, sample_weight])` whose feature names are the model input names.
Every pipeline is deterministic for a `seed` and takes an optional
`tf.distribute.InputContext` to shard by hand; without it auto-sharding is DATA.
"""

from kzoo.data.bert_pretraining import bert_pretraining_dataset, make_sentence_pairs
from kzoo.data.causal_lm import causal_lm_dataset, pack_token_stream
from kzoo.data.classification import (
    LabelVocabulary,
    classification_dataset,
    encode_labels,
    held_out_label_ids,
)
from kzoo.data.masking import mask_tokens
from kzoo.data.readers import (
    ReadReport,
    read_csv,
    read_jsonl,
    read_text_documents,
    read_text_lines,
    tfds_dataset,
    tfrecord_dataset,
    write_tfrecord,
)
from kzoo.data.seq2seq import (
    corrupted_lengths,
    noise_mask,
    seq2seq_dataset,
    seq2seq_features,
    span_corruption,
    span_corruption_dataset,
)
from kzoo.data.squad import SquadExample, answer_text, read_squad, squad_dataset, squad_features, tokenize_with_offsets
from kzoo.data.token_classification import TaggedSentence, read_conll, token_classification_dataset
from kzoo.text.lines import text_file_lines  # the rule every reader applies to lines that are not UTF-8 text

__all__ = [
    "LabelVocabulary", "ReadReport", "SquadExample", "TaggedSentence", "answer_text", "bert_pretraining_dataset",
    "causal_lm_dataset", "classification_dataset", "corrupted_lengths", "encode_labels", "held_out_label_ids",
    "make_sentence_pairs", "mask_tokens", "noise_mask", "pack_token_stream", "read_conll", "read_csv", "read_jsonl",
    "read_squad", "read_text_documents", "read_text_lines", "seq2seq_dataset", "seq2seq_features", "span_corruption",
    "span_corruption_dataset", "squad_dataset", "squad_features", "text_file_lines", "tfds_dataset", "tfrecord_dataset",
    "token_classification_dataset", "tokenize_with_offsets", "write_tfrecord",
]
