from kzoo.models.bert.backbone import BertBackbone
from kzoo.models.bert.config import BertConfig
from kzoo.models.bert.tasks import BertClassifier, BertPretrainer, BertSpanQA, BertTokenClassifier

__all__ = ["BertBackbone", "BertClassifier", "BertConfig", "BertPretrainer", "BertSpanQA", "BertTokenClassifier"]
