from kzoo.models.seq2seq.backbone import Seq2SeqBackbone
from kzoo.models.seq2seq.config import Seq2SeqConfig
from kzoo.models.seq2seq.tasks import Seq2SeqLM

__all__ = ["Seq2SeqBackbone", "Seq2SeqConfig", "Seq2SeqLM"]
