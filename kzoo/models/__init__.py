"""kzoo.models: BERT, GPT and seq2seq backbones and tasks, presets, `from_preset`."""

from kzoo.models.backbone import Backbone, Task
from kzoo.models.bert import (
    BertBackbone,
    BertClassifier,
    BertConfig,
    BertPretrainer,
    BertSpanQA,
    BertTokenClassifier,
)
from kzoo.models.gpt import GPTBackbone, GPTCausalLM, GPTConfig
from kzoo.models.presets import PRESETS, Preset, from_preset, get_preset, list_presets
from kzoo.models.seq2seq import Seq2SeqBackbone, Seq2SeqConfig, Seq2SeqLM

__all__ = [
    "PRESETS", "Backbone", "BertBackbone", "BertClassifier", "BertConfig", "BertPretrainer", "BertSpanQA",
    "BertTokenClassifier", "GPTBackbone", "GPTCausalLM", "GPTConfig", "Preset", "Seq2SeqBackbone",
    "Seq2SeqConfig", "Seq2SeqLM", "Task", "from_preset", "get_preset", "list_presets",
]
