"""kzoo.convert: importing checkpoints from other frameworks.

`hf_checkpoint` is the architecture-independent part of reading a local
Hugging Face checkpoint directory (config, safetensors or opt-in PyTorch
weights, tokenizer files) plus the `WeightReader` bookkeeping and `assign`
helper that per-architecture converters build on. Needs `safetensors`.
`from_huggingface` builds a kzoo model from such a directory (BERT, GPT-2, T5, BART);
`from_keras_hub` does the same from a local keras-hub preset directory (BERT, GPT-2);
`from_checkpoint_directory` picks the one of the two that reads a given directory.
`to_huggingface` goes the other way: it writes a kzoo model (BERT/RoBERTa, GPT-2/Llama-style, T5/BART/mBART/
Marian) as a Hugging Face checkpoint directory that `transformers` loads.
"""

from kzoo.convert.directory import from_checkpoint_directory, is_checkpoint_directory
from kzoo.convert.hf_checkpoint import HFCheckpoint, WeightReader, assign, read_hf_checkpoint
from kzoo.convert.huggingface import ImportedModel, from_huggingface
from kzoo.convert.keras_hub import from_keras_hub
from kzoo.convert.to_huggingface import ExportedCheckpoint, to_huggingface

__all__ = [
    "ExportedCheckpoint", "HFCheckpoint", "ImportedModel", "WeightReader", "assign", "from_checkpoint_directory",
    "from_huggingface", "from_keras_hub", "is_checkpoint_directory", "read_hf_checkpoint", "to_huggingface",
]
