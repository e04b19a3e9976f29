"""BERT pretraining pipeline: sentence pairs with next-sentence labels and MLM masking."""

import numpy as np
import tensorflow as tf

from kzoo.data import _common
from kzoo.data.masking import mask_tokens

IS_NEXT, RANDOM_NEXT = 0, 1


def make_sentence_pairs(documents, max_num_tokens, seed=0, short_seq_prob=0.1, random_next_rate=0.5):
    """Builds `(A, B, label)` segment pairs from tokenized documents (BERT's create_pretraining_data).

    Consecutive sentences of a document are gathered until they reach a target length
    (`max_num_tokens`, or with probability `short_seq_prob` a random shorter one) and
    split at a random sentence boundary into A and B. A chunk holds at least two
    sentences (a document's lone last sentence is paired with its predecessor), so
    only one-sentence documents force a random B and the labels stay close to 50%;
    `pack_bert` truncates any overshoot. With probability
    `random_next_rate` (always, if the chunk is one sentence) B is replaced by sentences
    from a different random document (label `RANDOM_NEXT` = 1) and the unused
    sentences are put back; otherwise B is the true continuation (`IS_NEXT` = 0).

    Args:
        documents: list of documents, each a list of sentences, each a list of ids.
        max_num_tokens: the budget for A + B (sequence length minus 3 special tokens).

    Returns:
        Three lists: segments A, segments B (lists of ids), labels.
    """
    documents = [[sentence for sentence in doc if sentence] for doc in documents]
    documents = [doc for doc in documents if doc]
    if len(documents) < 2:
        raise ValueError(
            f"Next-sentence pairs need at least 2 non-empty documents, got {len(documents)}; "
            "read with document_per='block' or pass more files."
        )
    rng = np.random.default_rng(seed)
    firsts, seconds, labels = [], [], []
    for doc_index, document in enumerate(documents):
        target = max_num_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_num_tokens + 1))
        chunk, length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or (length >= target and len(chunk) >= 2):
                lone_tail = len(chunk) == 1 and i > 0
                if lone_tail:
                    chunk = [document[i - 1], document[i]]  # a lone tail sentence pairs with its predecessor
                a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                first = [token for sentence in chunk[:a_end] for token in sentence]
                if len(chunk) == 1 or rng.random() < random_next_rate:
                    second = _random_continuation(documents, doc_index, target - len(first), rng)
                    labels.append(RANDOM_NEXT)
                    if not lone_tail:
                        i -= len(chunk) - a_end  # put the unused sentences back
                else:
                    second = [token for sentence in chunk[a_end:] for token in sentence]
                    labels.append(IS_NEXT)
                firsts.append(first)
                seconds.append(second)
                chunk, length = [], 0
                target = max_num_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_num_tokens + 1))
            i += 1
    return firsts, seconds, labels


def _random_continuation(documents, doc_index, target_length, rng):
    other = int(rng.integers(0, len(documents) - 1))
    other += other >= doc_index  # any document but this one
    document = documents[other]
    start = int(rng.integers(0, len(document)))
    second = []
    for sentence in document[start:]:
        second.extend(sentence)
        if len(second) >= target_length:
            break
    return second


def bert_pretraining_dataset(
    documents, tokenizer, *, sequence_length, max_predictions_per_sequence, vocabulary_size, cls_id, sep_id,
    pad_id, mask_id, mask_rate=0.15, short_seq_prob=0.1, dupe_factor=1, batch_size=None, shuffle=False, seed=0,
    input_context=None, shuffle_buffer=10_000, drop_remainder=True,
):
    """BERT pretraining examples for `BertPretrainer.fit`.

    Sentences are tokenized eagerly (pair construction needs their lengths), pairs are
    built with `make_sentence_pairs(seed=seed)`, then each pair is packed as
    `[CLS] A [SEP] B [SEP]` (longest-first truncation) and masked with `mask_tokens`
    seeded by `(seed, pair index)`; the masks are the same every epoch (static
    masking, as in BERT's original data). `dupe_factor` > 1 repeats the pairing and
    masking that many times with other seeds (BERT's `dupe_factor`), tokenizing once,
    so one pass over the data shows each sentence with different partners and masks.

    Args:
        documents: list of documents, each a list of sentence strings
            (`readers.read_text_documents`).
        sequence_length, max_predictions_per_sequence: `s` and `p`.
        vocabulary_size, cls_id, sep_id, pad_id, mask_id: the tokenizer's special ids.

    Returns:
        A dataset of `(features, targets, sample_weights)`:
        features `token_ids`, `segment_ids`, `padding_mask` int32 `(b, s)`,
        `mask_positions` int32 `(b, p)`; targets `{"mlm_logits": masked ids (b, p) int32,
        "nsp_logits": (b,) int32 (0 = is next, 1 = random)}`; sample weights
        `{"mlm_logits": (b, p) float32, "nsp_logits": ones (b,) float32}`.
    """
    _common.check_special_ids(vocabulary_size, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id, mask_id=mask_id)
    flat = [sentence for document in documents for sentence in document]
    ids = iter(_common.tokenize_python(tokenizer, flat))
    tokenized = [[next(ids) for _ in document] for document in documents]
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}.")
    firsts, seconds, labels = [], [], []
    for copy in range(dupe_factor):  # copy 0 uses `seed` itself, as without duplication
        pairs = make_sentence_pairs(tokenized, sequence_length - 3, seed if copy == 0 else [seed, copy], short_seq_prob)
        for out, part in zip((firsts, seconds, labels), pairs, strict=True):
            out.extend(part)

    source = tf.data.Dataset.zip(
        _common.ragged_slices(firsts), _common.ragged_slices(seconds),
        tf.data.Dataset.from_tensor_slices(np.array(labels, np.int32)),
    ).enumerate()
    source = _common.shard_source(source, input_context)
    source = _common.shuffle_source(source, shuffle, seed, shuffle_buffer)

    def to_example(index, pair):
        first, second, label = pair
        packed = _common.pack_bert(first, second, sequence_length, cls_id, sep_id, pad_id)
        masked = mask_tokens(
            packed["token_ids"], _common.element_seed(seed, index), vocabulary_size=vocabulary_size,
            mask_id=mask_id, special_ids=(cls_id, sep_id, pad_id, mask_id),
            max_predictions=max_predictions_per_sequence, mask_rate=mask_rate,
        )
        features = dict(packed, token_ids=masked["token_ids"], mask_positions=masked["mask_positions"])
        targets = {"mlm_logits": masked["mask_ids"], "nsp_logits": label}
        weights = {"mlm_logits": masked["mask_weights"], "nsp_logits": tf.ones([], tf.float32)}
        return features, targets, weights

    examples = source.map(to_example, num_parallel_calls=_common.AUTOTUNE, deterministic=True)
    return _common.finish(examples, batch_size=batch_size, input_context=input_context, drop_remainder=drop_remainder)
