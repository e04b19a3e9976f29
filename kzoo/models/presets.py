"""Named configurations with the published sizes, and `from_preset`.

Each preset records the parameter count of the published model it reproduces (the
backbone, embeddings included, as counted by the reference implementation); a test
builds every preset and asserts the exact count.
"""

import dataclasses

from kzoo.models.bert import BertBackbone, BertConfig
from kzoo.models.gpt import GPTBackbone, GPTConfig
from kzoo.models.seq2seq import Seq2SeqBackbone, Seq2SeqConfig

FAMILIES = {"bert": BertBackbone, "gpt": GPTBackbone, "seq2seq": Seq2SeqBackbone}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named config: `family`, `config`, what it reproduces and its parameter count."""

    name: str
    family: str
    config: object
    description: str
    published_parameters: int | None = None


def _bert(layers, hidden, heads, **extra):
    return BertConfig(num_layers=layers, hidden_dim=hidden, num_heads=heads, intermediate_dim=4 * hidden, **extra)


def _gpt(layers, hidden, heads):
    return GPTConfig(num_layers=layers, hidden_dim=hidden, num_heads=heads, intermediate_dim=4 * hidden)


_T5 = dict(
    vocabulary_size=32128, key_dim=64, position_embedding="relative", norm_type="rms", norm_first=True,
    norm_epsilon=1e-6, use_bias=False, attention_scale=1.0, scale_embeddings=False, scale_decoder_outputs=True,
    max_sequence_length=512,
)
_BART = dict(
    vocabulary_size=50265, position_embedding="learned", position_offset=2, max_sequence_length=1024,
    activation="gelu", norm_epsilon=1e-5, scale_embeddings=False, embedding_norm=True,
)

_PRESETS = [
    # BERT (uncased English vocabulary); compact sizes from Turc et al. 2019.
    Preset("bert_tiny", "bert", _bert(2, 128, 2), "BERT L-2 H-128 (Turc et al.)", 4_385_920),
    Preset("bert_mini", "bert", _bert(4, 256, 4), "BERT L-4 H-256 (Turc et al.)", 11_170_560),
    Preset("bert_small", "bert", _bert(4, 512, 8), "BERT L-4 H-512 (Turc et al.)", 28_763_648),
    Preset("bert_base", "bert", _bert(12, 768, 12), "BERT-base uncased", 109_482_240),
    Preset("bert_large", "bert", _bert(24, 1024, 16), "BERT-large uncased", 335_141_888),
    # GPT-2 (byte-level BPE, 50257 tokens, 1024 positions).
    Preset("gpt2_small", "gpt", _gpt(12, 768, 12), "GPT-2 124M", 124_439_808),
    Preset("gpt2_medium", "gpt", _gpt(24, 1024, 16), "GPT-2 355M", 354_823_168),
    Preset("gpt2_large", "gpt", _gpt(36, 1280, 20), "GPT-2 774M", 774_030_080),
    # Seq2seq.
    Preset(
        "transformer_base", "seq2seq", Seq2SeqConfig(),
        "Transformer base (Vaswani et al. 2017), shared 37k BPE vocabulary; the paper reports 65M for its setup",
        63_082_496,
    ),
    Preset(
        "t5_small", "seq2seq",
        Seq2SeqConfig(num_encoder_layers=6, num_decoder_layers=6, num_heads=8, hidden_dim=512,
                      intermediate_dim=2048, **_T5),
        "T5 v1.0 small", 60_506_624,
    ),
    Preset(
        "t5_base", "seq2seq",
        Seq2SeqConfig(num_encoder_layers=12, num_decoder_layers=12, num_heads=12, hidden_dim=768,
                      intermediate_dim=3072, **_T5),
        "T5 v1.0 base", 222_903_552,
    ),
    Preset(
        "bart_base", "seq2seq",
        Seq2SeqConfig(num_encoder_layers=6, num_decoder_layers=6, num_heads=12, hidden_dim=768,
                      intermediate_dim=3072, **_BART),
        "BART base", 139_420_416,
    ),
    # BERT-family variants (RoBERTa, DistilBERT, ELECTRA).
    # GPT-family variants (Llama-style decoders).
    # Seq2seq variants (Marian).
    # Small sizes for the recipes' offline defaults (a few minutes on two CPU cores).
    Preset(
        "gpt_tiny", "gpt",
        GPTConfig(vocabulary_size=2048, num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512,
                  max_sequence_length=256),
        "2-layer, 128-wide GPT for CPU recipe runs",
    ),
    Preset(
        "t5_tiny", "seq2seq",
        Seq2SeqConfig(num_encoder_layers=2, num_decoder_layers=2, num_heads=4, hidden_dim=128,
                      intermediate_dim=512, **{**_T5, "vocabulary_size": 2048, "key_dim": 32,
                                               "max_sequence_length": 256}),
        "2+2-layer, 128-wide T5 for CPU recipe runs",
    ),
    # Tiny sizes for tests and smoke runs (no published counterpart).
    Preset("bert_test", "bert", _bert(2, 32, 2, vocabulary_size=128, max_sequence_length=64), "tiny BERT for tests"),
    Preset(
        "gpt_test", "gpt",
        GPTConfig(vocabulary_size=128, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                  max_sequence_length=64),
        "tiny GPT for tests",
    ),
    Preset(
        "t5_test", "seq2seq",
        Seq2SeqConfig(num_encoder_layers=2, num_decoder_layers=2, num_heads=2, hidden_dim=32,
                      intermediate_dim=64, **{**_T5, "vocabulary_size": 128, "key_dim": 16, "max_sequence_length": 64}),
        "tiny T5 for tests",
    ),
]

PRESETS = {preset.name: preset for preset in _PRESETS}


def get_preset(name):
    """The `Preset` called `name`; an unknown name raises with the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Valid presets: {', '.join(sorted(PRESETS))}.")
    return PRESETS[name]


def from_preset(name, **overrides):
    """Builds the randomly initialised backbone of preset `name`.

    `overrides` replace config fields (e.g. `dropout=0.0`, `max_sequence_length=128`);
    an unknown field raises with the valid ones. `dtype` is passed to the backbone.
    """
    preset = get_preset(name)
    dtype = overrides.pop("dtype", None)
    config = preset.config.replace(**overrides)
    return FAMILIES[preset.family](**config.to_dict(), dtype=dtype, name=f"{name}_backbone")


def list_presets():
    """All presets, sorted by family then size."""
    return list(_PRESETS)
