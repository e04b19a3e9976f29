"""Named configurations with the published sizes, and `from_preset`.

Each preset records the parameter count of the published model it reproduces (the
backbone, embeddings included, as counted by the reference implementation). Tests assert
the exact count: small presets are built and counted; larger ones (up to 1.1B) by their
config's analytic `parameter_count()`, a formula checked against a built one-layer copy of
each (tests/models/test_presets.py).
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
# Llama-style decoders in the GPT family: rotary positions, RMSNorm, SwiGLU, no biases, no dropout.
_LLAMA = dict(
    position_embedding="rotary", norm_type="rms", gated_feed_forward=True, activation="silu", attention_bias=False,
    attention_output_bias=False, feed_forward_bias=False, dropout=0.0,
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
    Preset(
        "roberta_base", "bert",
        _bert(12, 768, 12, vocabulary_size=50265, num_segments=1, position_offset=2, norm_epsilon=1e-5),
        "RoBERTa base (RobertaModel, with pooler; byte-level BPE, 514 position rows: positions start at 2)",
        124_645_632,
    ),
    Preset(
        "distilbert_base_uncased", "bert", _bert(6, 768, 12, num_segments=0, use_pooler=False),
        "DistilBERT base uncased (no segment embedding, no pooler)", 66_362_880,
    ),
    Preset(
        "electra_base_discriminator", "bert", _bert(12, 768, 12, use_pooler=False),
        "ELECTRA base discriminator (ElectraModel: no pooler; 768-wide embeddings)", 108_891_648,
    ),
    Preset(
        "electra_small_discriminator", "bert", _bert(12, 256, 4, embedding_dim=128, use_pooler=False),
        "ELECTRA small discriminator (ElectraModel: 128-wide embeddings projected to 256, no pooler)", 13_483_008,
    ),
    # GPT-family variants (Llama-style decoders).
    Preset(
        "smollm2_135m", "gpt",
        GPTConfig(vocabulary_size=49152, num_layers=30, num_heads=9, num_key_value_heads=3, hidden_dim=576,
                  intermediate_dim=1536, max_sequence_length=8192, rotary_max_wavelength=100000.0,
                  norm_epsilon=1e-5, **_LLAMA),
        "SmolLM2-135M (Llama-style, grouped-query attention, tied embeddings)", 134_515_008,
    ),
    Preset(
        "qwen2_5_0_5b", "gpt",
        GPTConfig(vocabulary_size=151936, num_layers=24, num_heads=14, num_key_value_heads=2, hidden_dim=896,
                  intermediate_dim=4864, max_sequence_length=32768, rotary_max_wavelength=1000000.0,
                  norm_epsilon=1e-6, **{**_LLAMA, "attention_bias": True}),
        "Qwen2.5-0.5B (Llama-style with query/key/value biases, tied embeddings)", 494_032_768,
    ),
    Preset(
        "tinyllama_1_1b", "gpt",
        GPTConfig(vocabulary_size=32000, num_layers=22, num_heads=32, num_key_value_heads=4, hidden_dim=2048,
                  intermediate_dim=5632, max_sequence_length=2048, rotary_max_wavelength=10000.0,
                  norm_epsilon=1e-5, tie_word_embeddings=False, **_LLAMA),
        "TinyLlama-1.1B (Llama 2 architecture, grouped-query attention, untied output)", 1_100_048_384,
    ),
    # Seq2seq variants (Marian).
    Preset(
        "opus_mt_en_de", "seq2seq",
        Seq2SeqConfig(vocabulary_size=58101, num_heads=8, hidden_dim=512, intermediate_dim=2048,
                      max_sequence_length=512, sinusoidal_layout="split", store_position_table=True,
                      norm_epsilon=1e-5, activation="silu", scale_embeddings=True),
        "Marian OPUS-MT en-de (MarianMTModel; its two frozen 512x512 sinusoidal tables counted, as transformers "
        "does; the final_logits_bias buffer is Seq2SeqLM's)", 74_410_496,
    ),
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
        "llama_test", "gpt",
        GPTConfig(vocabulary_size=128, num_layers=2, num_heads=4, num_key_value_heads=2, hidden_dim=32,
                  intermediate_dim=48, max_sequence_length=64, tie_word_embeddings=False, **_LLAMA),
        "tiny Llama-style decoder (grouped-query attention, untied output) for tests",
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
