from kzoo.models.gpt.backbone import GPTBackbone
from kzoo.models.gpt.config import GPTConfig
from kzoo.models.gpt.tasks import GPTCausalLM

__all__ = ["GPTBackbone", "GPTCausalLM", "GPTConfig"]
