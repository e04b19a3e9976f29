"""The functions a kzoo SavedModel serves, one set per model family.

Every exported model has `serving_default`, the tensor-in signature: the Keras model's own int32 inputs, any
batch size and sequence length, and its outputs as float32 (plus derived outputs such as probabilities). With a
tokenizer, a text-in signature is added per task:

* `BertClassifier`: `classify` (`text`) and `classify_pair` (`text`, `text_pair`) → `label`, `label_id`, `score`,
  `probabilities`.
* `BertTokenClassifier`: `tag` (`text`) → `words`, `tags`, `entity_types`, `entity_texts`, `entity_starts`,
  `entity_ends`, `num_entities`.
* `BertSpanQA`: `answer` (`question`, `context`) → `answer`, `score`, `answer_start`, `answer_end`.
* `BertBackbone`: `embed` (`text`) → `embedding` (mean of the token vectors), and `pooled_output` when the backbone
  has a pooler (`use_pooler=True`).
* `GPTCausalLM`, `Seq2SeqLM`: `generate` (`prompts`) and `generate_with_options` (`prompts`, `max_new_tokens`,
  `temperature`, `top_p`, `seed`) → `text`, `token_ids`, `num_tokens`.

Input policy (stated again in the export's `assets.extra/kzoo_export.json`): texts are tokenized in the graph and
truncated to the export's `sequence_length` sub-tokens, special tokens included: the END of a classification text, of
a tagged sentence, of a QA context or of a seq2seq source is cut; a GPT prompt keeps its LAST tokens. Words past
the cut are tagged "O". An empty batch, a token id outside the vocabulary, a mask value other than 0/1, mismatched
input shapes, a sequence longer than the model's positions, an empty (or not UTF-8) generation prompt or an option
out of range fail the request with an InvalidArgumentError naming the input; the server keeps running.

Every function here is traced inside `kzoo.layers.cache_updates.portable_updates()` by the exporter, so the graphs
use core TensorFlow kernels only.
"""

import dataclasses

import tensorflow as tf

from kzoo.export import text_ops
from kzoo.export.errors import ExportError
from kzoo.models.backbone import backbone_of, position_limit
from kzoo.models.bert.tasks import BertClassifier, BertTokenClassifier
from kzoo.models.gpt.tasks import GPTCausalLM
from kzoo.models.seq2seq.tasks import Seq2SeqLM
from kzoo.text import packing

TOKEN_ID_INPUTS = ("token_ids", "encoder_token_ids", "decoder_token_ids")
MASK_INPUTS = ("padding_mask", "encoder_padding_mask", "decoder_padding_mask")


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Export-time choices of the text signatures.

    Attributes:
        sequence_length: sub-tokens per packed text (special tokens included): the classification/tagging/QA row
            length, the seq2seq source length and the GPT prompt budget.
        max_new_tokens: the most tokens `generate` may produce (sizes its buffers); `generate` uses it,
            `generate_with_options` accepts 1..max_new_tokens. None: 64, or half the positions of a model with
            fewer than 128.
        temperature: `generate`'s temperature (0 = greedy).
        top_p: `generate`'s nucleus mass (1.0 = the whole distribution).
        max_query_length: question sub-tokens kept for QA.
        max_answer_tokens: the longest answer span in sub-tokens.
        stop_token_ids: a generated row ends after one of them (default: the tokenizer's eos).
        decoder_start_id: first decoder token of a seq2seq model (default: the pad id, T5's convention).
        pad_id: pads prompts and stopped rows (default: the tokenizer's pad id).
    """

    sequence_length: int = 128
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_query_length: int = 64
    max_answer_tokens: int = 30
    stop_token_ids: tuple = ()
    decoder_start_id: int | None = None
    pad_id: int = 0


@dataclasses.dataclass
class Signature:
    """One exported function: `function` is a `tf.function` with an input signature."""

    name: str
    function: object
    doc: str
    example: dict  # name -> NumPy array: a valid request (warm-up and verification)


def _spec(name, dtype=tf.int32):
    """An input of any rank: the rank is checked in the graph (`text_ops.with_rank`)."""
    return tf.TensorSpec(None, dtype, name=name)


def class_labels(model, labels):
    """Class names of a classifier or tagger in id order, as exports write them to labels.json.

    `labels` None gives "0", "1", ...; for a model without classes `labels` must be None and
    the result is None. Raises `ExportError` when the count differs from the model's classes.
    """
    count = getattr(model, "num_classes", None)
    if count is None:
        if labels is not None:
            raise ExportError(f"labels were given, but a {type(model).__name__} has no classes; drop them.")
        return None
    if labels is None:
        return [str(i) for i in range(count)]
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ExportError(f"{len(labels)} labels given for a model with {count} classes; pass the labels.json the "
                          "model was trained with.")
    return labels

def _assert(condition, message):
    return tf.debugging.Assert(condition, [tf.constant(message)])


def checked_tensor_inputs(model, inputs):
    """`inputs` after in-graph checks: batch > 0, length >= 1, equal shapes within an id/mask family, ids in the
    vocabulary, masks of 0/1 only, segment ids in range, lengths within the positions. Returns the same dict
    (masks as int32)."""
    backbone = backbone_of(model)
    vocabulary = backbone.vocabulary_size
    limit = position_limit(model)
    checks = []
    for name in TOKEN_ID_INPUTS:
        if name not in inputs:
            continue
        ids = inputs[name]
        shape = tf.shape(ids)
        checks.append(_assert(shape[0] > 0, f"{name} is an empty batch: send at least one row."))
        checks.append(_assert(shape[1] > 0, f"{name} has no tokens: send at least one token per row."))
        checks.append(_assert(
            tf.reduce_all((ids >= 0) & (ids < vocabulary)),
            f"{name} holds ids outside the vocabulary [0, {vocabulary - 1}].",
        ))
        if limit is not None:
            checks.append(_assert(
                shape[1] <= limit,
                f"{name} is longer than the {limit} positions of the model: send at most {limit} tokens per row.",
            ))
        prefix = name[: -len("token_ids")]
        for partner in (f"{prefix}padding_mask", f"{prefix}segment_ids"):
            if partner in inputs:
                checks.append(_assert(
                    tf.reduce_all(tf.equal(tf.shape(inputs[partner]), shape)),
                    f"{partner} must have the shape of {name} (batch, length).",
                ))
    for name in MASK_INPUTS:
        if name in inputs:
            checks.append(_assert(
                tf.reduce_all((inputs[name] == 0) | (inputs[name] == 1)),
                f"{name} must hold only 0 (padding) and 1 (real token).",
            ))
    if "segment_ids" in inputs and backbone.num_segments:  # only BERT has them; DistilBERT's (0) are ignored
        segments = backbone.num_segments
        checks.append(_assert(
            tf.reduce_all((inputs["segment_ids"] >= 0) & (inputs["segment_ids"] < segments)),
            f"segment_ids must be in [0, {segments - 1}].",
        ))
    if "mask_positions" in inputs:
        length = tf.shape(inputs["token_ids"])[1]
        positions = inputs["mask_positions"]
        checks.append(_assert(
            tf.reduce_all((positions >= 0) & (positions < length)),
            "mask_positions must index positions of token_ids (0 .. length - 1).",
        ))
        checks.append(_assert(
            tf.shape(positions)[0] == tf.shape(inputs["token_ids"])[0], "mask_positions must have token_ids' batch."
        ))
    with tf.control_dependencies(checks):
        return {
            name: tf.cast(tf.not_equal(value, 0), tf.int32) if name in MASK_INPUTS else tf.identity(value)
            for name, value in inputs.items()
        }


def _float_outputs(outputs, name="logits"):
    if not isinstance(outputs, dict):
        outputs = {name: outputs}
    return {key: tf.cast(value, tf.float32) for key, value in outputs.items()}


def input_names(model):
    return [tensor.name.split(":")[0] for tensor in model.inputs] if not isinstance(model.input, dict) else list(
        model.input
    )


# The shape of each named model output; `logits` depends on the task.
_OUTPUT_SHAPES = {
    "mlm_logits": "(b, p, vocabulary)",
    "nsp_logits": "(b, 2)",
    "sequence_output": "(b, s, hidden)",
    "pooled_output": "(b, hidden)",
    "start_logits": "(b, s)",
    "end_logits": "(b, s)",
}
_LOGITS_SHAPES = {
    BertClassifier: "(b, num_classes)",
    BertTokenClassifier: "(b, s, num_classes)",
    GPTCausalLM: "(b, s, vocabulary): position i predicts token i + 1",
    Seq2SeqLM: "(b, s_decoder, vocabulary)",
}


def output_names(model):
    """The names of the outputs `model` actually has, in its output order (`logits` for a single tensor).

    Read from the model, not from its class: a `BertBackbone` built with `use_pooler=False` has no
    `pooled_output`, a `BertPretrainer` built with `next_sentence_prediction=False` no `nsp_logits`.
    """
    return list(model.output) if isinstance(model.output, dict) else ["logits"]


def describe_outputs(model):
    """`serving_default`'s outputs in words: the model's own outputs, then the derived ones."""
    logits = next((text for cls, text in _LOGITS_SHAPES.items() if isinstance(model, cls)), "")
    parts = [f"{name} {_OUTPUT_SHAPES.get(name, logits)}".rstrip() for name in output_names(model)]
    if isinstance(model, BertClassifier):
        parts.append("probabilities (b, num_classes)")
    if isinstance(model, BertTokenClassifier):
        parts.append("tag_ids (b, s)")
    return ", ".join(parts)


def tensor_signature(model, example):
    """`serving_default`: the model's int32 inputs -> its outputs (float32), plus derived outputs."""
    names = input_names(model)
    spec = {name: _spec(name) for name in names}

    @tf.function(input_signature=[spec])
    def serve(inputs):
        inputs = {name: text_ops.with_rank(value, 2, name) for name, value in inputs.items()}
        outputs = _float_outputs(model(checked_tensor_inputs(model, inputs), training=False))
        if isinstance(model, BertClassifier):
            outputs["probabilities"] = tf.nn.softmax(outputs["logits"], axis=-1)
        if isinstance(model, BertTokenClassifier):
            outputs["tag_ids"] = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
        return outputs

    described = describe_outputs(model)
    doc = (
        f"Tensor in: {', '.join(names)}, int32 (batch, length); masks are 1 on real tokens, 0 on padding. "
        f"Out: {described}, float32."
    )
    return Signature("serving_default", serve, doc, example)


def _bert_ids(tokenizer):
    special = tokenizer.special_token_ids
    missing = [kind for kind in ("cls", "sep") if kind not in special]
    if missing:
        raise ExportError(
            f"A BERT text signature needs [CLS] and [SEP] in the tokenizer's vocabulary; it lacks {missing}."
        )
    return special["cls"], special["sep"], tokenizer.pad_id


def _bert_packed(tokenizer, text, sequence_length, text_pair=None):
    if text_pair is None:
        packed = tokenizer.encode(text, sequence_length=sequence_length)
        packed["segment_ids"] = tf.zeros_like(packed["token_ids"])
    else:
        packed = tokenizer.encode_pair(text, text_pair, sequence_length=sequence_length)
    packed["padding_mask"] = tf.cast(packed["padding_mask"], tf.int32)
    return packed


def classification_signatures(model, tokenizer, labels, settings):
    _bert_ids(tokenizer)
    label_names = tf.constant(list(labels))
    length = settings.sequence_length

    def finish(logits):
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(label_names, label_id),
            "label_id": label_id,
            "score": tf.reduce_max(probabilities, axis=-1),
            "probabilities": probabilities,
        }

    @tf.function(input_signature=[_spec("text", tf.string)])
    def classify(text):
        text = text_ops.check_batch(text, "text")
        return finish(model(_bert_packed(tokenizer, text, length), training=False))

    @tf.function(input_signature=[_spec("text", tf.string), _spec("text_pair", tf.string)])
    def classify_pair(text, text_pair):
        text, text_pair = text_ops.check_pair(text, text_pair, ("text", "text_pair"))
        return finish(model(_bert_packed(tokenizer, text, length, text_pair), training=False))

    out = "label (b,) string, label_id (b,) int32, score (b,) float32 (its probability), probabilities (b, C)"
    policy = f"truncated to {length} sub-tokens with [CLS]/[SEP]"
    example = {"text": ["a short example sentence", ""]}
    return [
        Signature("classify", classify, f"Text in: text (b,) string, {policy} (the end is cut). Out: {out}.",
                  example),
        Signature("classify_pair", classify_pair,
                  f"Text pairs in: text, text_pair (b,) string, {policy}, the longer text cut first. Out: {out}.",
                  {"text": ["first text"], "text_pair": ["second text"]}),
    ]


def tagging_signature(model, tokenizer, labels, settings):
    cls_id, sep_id, pad_id = _bert_ids(tokenizer)
    label_names = tf.constant(list(labels))
    length = settings.sequence_length
    kept = packing.check_budget(length, 2)  # sub-tokens a tagged row holds beside [CLS] and [SEP]

    @tf.function(input_signature=[_spec("text", tf.string)])
    def tag(text):
        text = text_ops.check_batch(text, "text")
        words, pieces = text_ops.word_pieces(tokenizer, text)
        packed = packing.pack(pieces.merge_dims(1, 2), sequence_length=length, start_ids=(cls_id,),
                              end_ids=(sep_id,), pad_id=pad_id)  # keeps the first `kept` sub-tokens
        packed["padding_mask"] = tf.cast(packed["padding_mask"], tf.int32)
        packed["segment_ids"] = tf.zeros_like(packed["token_ids"])
        logits = tf.cast(model(packed, training=False), tf.float32)
        tag_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        first = text_ops.first_piece_positions(pieces)
        tags = text_ops.word_tags(tag_ids, first, label_names, offset=1, kept=kept)
        tags = tags.with_flat_values(
            tf.where(text_ops.word_has_pieces(pieces).flat_values, tags.flat_values, text_ops.OUTSIDE_TAG)
        )
        outputs = {"words": words.to_tensor(default_value=""), "tags": tags.to_tensor(default_value="")}
        outputs.update(text_ops.entities(words, tags))
        return outputs

    doc = (
        "Text in: text (b,) string, split into words at whitespace; each word tokenized on its own, the first "
        f"{kept} sub-tokens kept (later words are tagged O). Out: words, tags (b, W) string (padded with ''), "
        "entity_types, entity_texts (b, E) string, entity_starts, entity_ends (b, E) int32 word indices (end "
        "exclusive, -1 as padding), num_entities (b,) int32; entities follow the BIO rules of conlleval."
    )
    return [Signature("tag", tag, doc, {"text": ["John Smith lives in Berlin", "x"]})]


def qa_signature(model, tokenizer, settings):
    cls_id, sep_id, pad_id = _bert_ids(tokenizer)
    length = settings.sequence_length
    query_budget = min(settings.max_query_length, length // 2)
    # RoBERTa-style tokenizers: `<s> question </s></s> context </s>`, every token in segment 0.
    pair_start = tuple(getattr(tokenizer, "pair_start_ids", ()))
    two_segments = bool(getattr(tokenizer, "pair_segment_ids", True))

    @tf.function(input_signature=[_spec("question", tf.string), _spec("context", tf.string)])
    def answer(question, context):
        question, context = text_ops.check_pair(question, context, ("question", "context"))
        query = tokenizer.tokenize(question)[:, :query_budget]
        words, pieces = text_ops.word_pieces(tokenizer, context)
        packed = packing.pack(query, pieces.merge_dims(1, 2), sequence_length=length, start_ids=(cls_id,),
                              end_ids=(sep_id,), pad_id=pad_id, truncate="waterfall",
                              pair_start_ids=pair_start)  # the context's end is cut
        packed["padding_mask"] = tf.cast(packed["padding_mask"], tf.int32)
        # (b,) context sub-tokens kept + its [SEP]: the packer's segment 1 holds them after the pair's start ids.
        second = tf.reduce_sum(packed["segment_ids"], axis=1) - len(pair_start)
        if not two_segments:
            packed["segment_ids"] = tf.zeros_like(packed["segment_ids"])
        outputs = _float_outputs(model(packed, training=False))
        offset = tf.reduce_sum(packed["padding_mask"], axis=1) - second  # (b,) packed position of context token 0
        kept = second - 1
        position = tf.range(length)[None, :]
        allowed = (position >= offset[:, None]) & (position < (offset + kept)[:, None])
        start, end, score = text_ops.best_spans(
            outputs["start_logits"], outputs["end_logits"], allowed, settings.max_answer_tokens
        )
        # Context sub-token -> word index.
        counts = pieces.row_lengths(axis=2)
        token_word = tf.ragged.range(words.row_lengths())
        token_word = tf.RaggedTensor.from_row_lengths(
            tf.repeat(token_word.flat_values, counts.flat_values), tf.reduce_sum(counts, axis=1)
        )
        dense_words = tf.cast(token_word.to_tensor(default_value=0, shape=[None, length]), tf.int32)
        any_context = tf.reduce_any(allowed, axis=1)
        first_word = tf.gather(dense_words, tf.maximum(start - offset, 0), batch_dims=1)
        last_word = tf.gather(dense_words, tf.maximum(end - offset, 0), batch_dims=1) + 1
        first_word = tf.where(any_context, first_word, 0)  # an empty span where no context fits
        last_word = tf.where(any_context, last_word, 0)
        spans = tf.gather(words, tf.ragged.range(first_word, last_word), batch_dims=1)
        text = text_ops.strip_edge_punctuation(tf.strings.reduce_join(spans, axis=1, separator=" "))
        return {
            "answer": tf.where(any_context, text, ""),
            "score": tf.where(any_context, score, tf.float32.min),
            "answer_start": tf.where(any_context, first_word, -1),
            "answer_end": tf.where(any_context, last_word, -1),
        }

    doc = (
        f"Text in: question, context (b,) string. Packed as [CLS] question [SEP] context [SEP] in {length} "
        f"sub-tokens: the question keeps its first {query_budget}, the context is cut at the end (no sliding "
        f"window). Out: answer (b,) string (whole whitespace words, edge punctuation removed; '' when no context "
        f"fits), score (b,) float32 start+end logit, answer_start, answer_end (b,) int32 context word indices "
        f"(end exclusive). Spans are at most {settings.max_answer_tokens} sub-tokens."
    )
    example = {"question": ["Where does John live?"], "context": ["John lives in Berlin."]}
    return [Signature("answer", answer, doc, example)]


def embedding_signature(model, tokenizer, settings):
    _bert_ids(tokenizer)
    length = settings.sequence_length

    @tf.function(input_signature=[_spec("text", tf.string)])
    def embed(text):
        text = text_ops.check_batch(text, "text")
        packed = _bert_packed(tokenizer, text, length)
        outputs = _float_outputs(model(packed, training=False))
        mask = tf.cast(packed["padding_mask"], tf.float32)[:, :, None]
        mean = tf.reduce_sum(outputs["sequence_output"] * mask, axis=1) / tf.reduce_sum(mask, axis=1)
        result = {"embedding": mean}
        if "pooled_output" in outputs:  # a backbone built with use_pooler=False has none
            result["pooled_output"] = outputs["pooled_output"]
        return result

    pooled = "; pooled_output (b, hidden)" if "pooled_output" in output_names(model) else ""
    doc = (
        f"Text in: text (b,) string, truncated to {length} sub-tokens with [CLS]/[SEP]. Out: embedding (b, hidden) "
        f"float32, the mean of the final token vectors over real tokens{pooled}."
    )
    return [Signature("embed", embed, doc, {"text": ["a sentence to embed"]})]
