"""Import of local Hugging Face checkpoints into kzoo models.

`from_huggingface(directory)` reads `config.json` to pick the architecture, builds
the matching kzoo model, maps every weight (a missing or unused weight is an error
listing the names, and so is a kzoo weight the file gave no value) and returns it
with the checkpoint's tokenizer files.
"""

import dataclasses
import importlib

from kzoo.convert.hf_checkpoint import WeightReader, check_all_assigned, read_hf_checkpoint, recording_assignments
from kzoo.models.backbone import weights_to_be_overwritten

# model_type -> (kzoo family, the converter module under kzoo.convert). Each converter module has
# `load_model(reader, hf_config, dtype)`, which returns the kzoo model with exactly the parts the file has.
CONVERTERS = {
    "bert": ("bert", "hf_bert"),
    "roberta": ("bert", "hf_roberta"),
    "xlm-roberta": ("bert", "hf_roberta"),
    "distilbert": ("bert", "hf_distilbert"),
    "electra": ("bert", "hf_electra"),
    "gpt2": ("gpt", "hf_gpt2"),
    "llama": ("gpt", "hf_llama"),
    "mistral": ("gpt", "hf_llama"),
    "qwen2": ("gpt", "hf_llama"),
    "t5": ("seq2seq", "hf_seq2seq"),
    "bart": ("seq2seq", "hf_seq2seq"),
    "mt5": ("seq2seq", "hf_seq2seq"),
    "mbart": ("seq2seq", "hf_seq2seq"),
    "marian": ("seq2seq", "hf_seq2seq"),
}
# model_type -> kzoo family
SUPPORTED = {model_type: family for model_type, (family, _) in CONVERTERS.items()}


@dataclasses.dataclass
class ImportedModel:
    """What `from_huggingface` returns.

    Attributes:
        model: the kzoo model, with exactly the parts the file has: for BERT a
            `BertPretrainer` (a file with the masked-LM head; its next-sentence head
            only when the file has one, as `BertForPreTraining` files do) or a
            `BertBackbone` (its pooler only when the file has one); `GPTCausalLM`;
            or `Seq2SeqLM`.
        family: "bert", "gpt" or "seq2seq".
        hf_config: the checkpoint's `config.json`.
        tokenizer_files: basename -> path of the tokenizer files found beside it.
    """

    model: object
    family: str
    hf_config: dict
    tokenizer_files: dict

    @property
    def backbone(self):
        return getattr(self.model, "backbone", self.model)


def from_huggingface(directory, family=None, allow_pickle=False, dtype=None):
    """Builds a kzoo model from a local Hugging Face checkpoint directory.

    Args:
        directory: a folder with `config.json` and `model.safetensors` (or sharded
            safetensors; `pytorch_model.bin` only with `allow_pickle=True`).
        family: optional "bert", "gpt" or "seq2seq"; a checkpoint of another
            architecture then raises instead of loading.
        allow_pickle: read pickled `.bin` weights (they can run code when loaded).
        dtype: dtype policy of the built model (e.g. "mixed_bfloat16").

    Returns:
        `ImportedModel`.
    """
    checkpoint = read_hf_checkpoint(directory, allow_pickle=allow_pickle)
    model_type = checkpoint.config.get("model_type")
    if model_type not in SUPPORTED:
        raise ValueError(
            f"{directory}: checkpoint model_type {model_type!r} is not supported; kzoo imports "
            f"{sorted(SUPPORTED)}."
        )
    found, module = CONVERTERS[model_type]
    if family is not None and family != found:
        raise ValueError(
            f"{directory} holds a {model_type!r} checkpoint ({found} family), not a {family!r} model; "
            f"pass family={found!r} or choose the right checkpoint."
        )
    reader = WeightReader(checkpoint.weights)
    converter = importlib.import_module(f"kzoo.convert.{module}")
    with recording_assignments() as assigned, weights_to_be_overwritten():  # every weight comes from the file
        model = converter.load_model(reader, checkpoint.config, dtype)
    reader.finish()
    check_all_assigned(model, assigned, directory)
    return ImportedModel(model, found, checkpoint.config, checkpoint.tokenizer_files)
