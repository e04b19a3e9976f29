"""kzoo `BertBackbone` and its tasks -> Hugging Face BERT (`bert`) or RoBERTa (`roberta`): the inverse of `hf_bert`.

| kzoo model | transformers class |
|---|---|
| `BertBackbone` | `BertModel` (with its pooler when the backbone has one) |
| `BertPretrainer` | `BertForPreTraining` (MLM + NSP) / `BertForMaskedLM` (MLM only) |
| `BertClassifier` | `BertForSequenceClassification` (pooler -> dropout -> linear) |
| `BertTokenClassifier` | `BertForTokenClassification` (no pooler: a backbone's pooler is left out) |
| `BertSpanQA` | `BertForQuestionAnswering` (`qa_outputs`; no pooler) |

A backbone with `position_offset=2` (RoBERTa's padding-offset positions) is written as `roberta` (`RobertaModel`,
`RobertaForMaskedLM`, `RobertaForTokenClassification`, `RobertaForQuestionAnswering`, and
`RobertaForSequenceClassification` for a `BertClassifier` on a backbone without pooler, whose head is RoBERTa's:
tanh dense + linear on the first token); `to_huggingface` makes it `xlm-roberta` when the tokenizer is
XLM-R's SentencePiece model. A classifier that no transformers head computes exports its backbone (a note says so).
The MLM decoder is tied to the word embeddings and not stored, as `save_pretrained` writes it.
"""

from kzoo.convert import _to_hf
from kzoo.convert._to_hf import ExportRefused, FamilyExport, Tensors

# BertConfig fields this exporter maps; any other field must keep its default.
KNOWN = {
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length",
    "num_segments", "dropout", "attention_dropout", "activation", "norm_epsilon", "initializer_range", "use_pooler",
    "position_offset", "embedding_dim",
}


def export(model):
    """`FamilyExport` of a BERT-family kzoo model (backbone or task)."""
    from kzoo.models import BertBackbone, BertClassifier, BertPretrainer, BertSpanQA, BertTokenClassifier

    backbone = model if isinstance(model, BertBackbone) else model.backbone
    what = type(model).__name__
    found = _to_hf.options(backbone, {"position_offset": 0, "embedding_dim": None})
    _to_hf.require_defaults(found, KNOWN, _to_hf.defaults(backbone), what)
    _to_hf.require(found, {"embedding_dim": None}, "BERT/RoBERTa", what)
    if found["num_segments"] == 0:
        raise ExportRefused(f"{what}: num_segments=0 (DistilBERT's embeddings) has no BERT/RoBERTa equivalent.")
    roberta = found["position_offset"] != 0
    _to_hf.require(found, {"position_offset": (0, 2)}, "BERT/RoBERTa", what)
    model_type = "roberta" if roberta else "bert"
    family = "Roberta" if roberta else "Bert"
    notes = []
    head = None if isinstance(model, BertBackbone) else model
    if isinstance(head, BertClassifier) and _classifier_class(head, roberta) is None:
        notes.append(f"{what}: no transformers classifier reads the [CLS] position as this head does (BERT: pooler "
                     "+ linear; RoBERTa: no pooler, tanh dense + linear), so only the backbone is written.")
        head = None
    if head is not None and not isinstance(head, (BertPretrainer, BertClassifier, BertTokenClassifier, BertSpanQA)):
        notes.append(f"{what} has no matching transformers head; only its backbone is written.")
        head = None
    pooler = backbone.pooler is not None
    # transformers builds these heads' encoders without a pooler: a pooler in the file would be dropped on load.
    poolerless = (BertTokenClassifier, BertSpanQA) + ((BertPretrainer,) if roberta else ())
    if pooler and (isinstance(head, poolerless) or (isinstance(head, BertPretrainer)
                                                    and head.next_sentence_head is None)):
        notes.append(f"{what}: the transformers class has no pooler, so the backbone's pooler (unused by this "
                     "task) is left out.")
        pooler = False
    tensors = Tensors()
    _backbone(tensors, backbone, "" if head is None else f"{model_type}.", pooler)
    config = _config(found, model_type)
    if head is None:
        architecture = f"{family}Model"
        if not pooler:
            notes.append(f"{family}Model is written without a pooler (the backbone has none): load it with "
                         f"`{family}Model.from_pretrained(out_dir, add_pooling_layer=False)`.")
    elif isinstance(head, BertPretrainer):
        architecture = _pretrainer(tensors, head, model_type)
    elif isinstance(head, BertClassifier):
        architecture = _classifier_class(head, roberta)
        classifier = head.classification_head
        if roberta:  # RobertaClassificationHead: dropout, tanh dense, dropout, out_proj on the first token
            _to_hf.dense(tensors, classifier.intermediate, "classifier.dense")
            _to_hf.dense(tensors, classifier.output_dense, "classifier.out_proj")
        else:
            _to_hf.dense(tensors, classifier.output_dense, "classifier")
        config.update(num_labels=head.num_classes, classifier_dropout=head.dropout)
    elif isinstance(head, BertTokenClassifier):
        architecture = "BertForTokenClassification"
        if head.token_classification_head.intermediate is not None:
            raise ExportRefused(f"{what}: a token head with an intermediate layer has no transformers equivalent.")
        _to_hf.dense(tensors, head.token_classification_head.output_dense, "classifier")
        config.update(num_labels=head.num_classes, classifier_dropout=head.dropout)
    else:
        architecture = "BertForQuestionAnswering"
        _to_hf.dense(tensors, head.span_head.dense, "qa_outputs")
        config.update(num_labels=2)
    if roberta and architecture.startswith("Bert"):
        architecture = "Roberta" + architecture[len("Bert"):]
    special = {"pad": "pad_token_id"} if not roberta else {"pad": "pad_token_id", "bos": "bos_token_id",
                                                            "eos": "eos_token_id"}
    return FamilyExport(architecture, model_type, config, tensors, notes, special)


def _classifier_class(head, roberta):
    """The transformers class computing what this `BertClassifier` computes, or None."""
    pooled = head.backbone.pooler is not None  # BertClassifier reads the pooler when there is one
    intermediate = head.classification_head.intermediate is not None
    if not roberta and pooled and not intermediate:
        return "BertForSequenceClassification"
    if roberta and not pooled and intermediate:
        return "RobertaForSequenceClassification"
    return None


def _config(found, model_type):
    offset = found["position_offset"]
    config = {
        "vocab_size": found["vocabulary_size"],
        "hidden_size": found["hidden_dim"],
        "num_hidden_layers": found["num_layers"],
        "num_attention_heads": found["num_heads"],
        "intermediate_size": found["intermediate_dim"],
        "hidden_act": _to_hf.activation(found["activation"], "BERT"),
        "max_position_embeddings": found["max_sequence_length"] + offset,
        "type_vocab_size": found["num_segments"],
        "hidden_dropout_prob": found["dropout"],
        "attention_probs_dropout_prob": found["attention_dropout"],
        "layer_norm_eps": found["norm_epsilon"],
        "initializer_range": found["initializer_range"],
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    }
    if model_type == "roberta":
        # RoBERTa numbers positions from padding_idx + 1: the pad id is what makes the offset 2.
        config["pad_token_id"] = offset - 1
    return config


def _backbone(tensors, backbone, prefix, pooler):
    p = prefix
    _to_hf.token_table(tensors, backbone.token_embedding, f"{p}embeddings.word_embeddings.weight", "BERT")
    tensors.put(f"{p}embeddings.position_embeddings.weight",
                _to_hf.value(backbone.position_embedding_layer.position_embeddings))
    tensors.put(f"{p}embeddings.token_type_embeddings.weight", _to_hf.value(backbone.segment_embedding.embeddings))
    _to_hf.norm(tensors, backbone.embeddings_norm, f"{p}embeddings.LayerNorm")
    for index, block in enumerate(backbone.encoder_blocks):
        layer = f"{p}encoder.layer.{index}"
        _to_hf.attention(tensors, block.self_attention, {
            "query": f"{layer}.attention.self.query",
            "key": f"{layer}.attention.self.key",
            "value": f"{layer}.attention.self.value",
            "output": f"{layer}.attention.output.dense",
        })
        _to_hf.norm(tensors, block.self_attention_norm, f"{layer}.attention.output.LayerNorm")
        _to_hf.feed_forward(tensors, block.feed_forward, f"{layer}.intermediate.dense", f"{layer}.output.dense")
        _to_hf.norm(tensors, block.feed_forward_norm, f"{layer}.output.LayerNorm")
    if pooler:
        _to_hf.dense(tensors, backbone.pooler.dense, f"{p}pooler.dense")


def _pretrainer(tensors, model, model_type):
    head = model.masked_lm_head
    if model_type == "roberta":
        if model.next_sentence_head is not None:
            raise ExportRefused("BertPretrainer: RoBERTa has no next-sentence head; build the pretrainer with "
                                "next_sentence_prediction=False to export it as RobertaForMaskedLM.")
        _to_hf.dense(tensors, head.transform, "lm_head.dense")
        _to_hf.norm(tensors, head.norm, "lm_head.layer_norm")
        tensors.put("lm_head.bias", _to_hf.value(head.bias))
        return "RobertaForMaskedLM"
    _to_hf.dense(tensors, head.transform, "cls.predictions.transform.dense")
    _to_hf.norm(tensors, head.norm, "cls.predictions.transform.LayerNorm")
    tensors.put("cls.predictions.bias", _to_hf.value(head.bias))
    if model.next_sentence_head is None:
        return "BertForMaskedLM"
    _to_hf.dense(tensors, model.next_sentence_head.output_dense, "cls.seq_relationship")
    return "BertForPreTraining"
