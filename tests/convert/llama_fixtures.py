"""Tiny random Llama-family checkpoints (Llama, Qwen2, Mistral) for converter, generation and export tests.

Odd sizes as in tests/convert/hf_fixtures.py (vocabularies that are not multiples of 8, FFN widths that are not
multiples of the model width), with the features each architecture adds:

  * `make_llama`: grouped-query attention (6 query heads share 2 key/value heads), an untied LM head, a rotary
    base that is not the default; optionally biases on every attention projection and the feed-forward, and
    each `rope_scaling` kind (`ROPE_SCALING`).
  * `make_qwen2`: biases on query/key/value only, one key/value head, the LM head tied to the embedding.
  * `make_mistral`: a sliding window of `MISTRAL_WINDOW` keys, shorter than the test sequences.

Builders return `(directory, model)` like the others (saved with `save_pretrained`, eval mode, every parameter
re-drawn at random).
"""

import functools

from tests.convert.hf_fixtures import _finish

ROPE_THETA = 500.0
# Pre-training context of the llama3 and yarn kinds: short, so that their frequency ramps cut through the
# three frequencies of a 6-wide head.
ORIGINAL_CONTEXT = 16
# Dynamic NTK rescales once a sequence passes `max_position_embeddings`; tiny, so the tests' sequences do.
DYNAMIC_CONTEXT = 8
ROPE_SCALING = {
    "linear": {"rope_type": "linear", "factor": 2.5},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": ORIGINAL_CONTEXT},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT},
}
LLAMA_VOCAB, QWEN2_VOCAB, MISTRAL_VOCAB = 97, 103, 89
MISTRAL_WINDOW = 4


def make_llama(tmp_dir, seed=0, rope_scaling=None, biases=False):
    """`LlamaForCausalLM`: vocab 97, width 36, 6 heads of 6 with 2 key/value heads, 2 layers, FFN 37, untied.

    Args:
        rope_scaling: None or a key of `ROPE_SCALING`; "dynamic" shrinks `max_position_embeddings` to
            `DYNAMIC_CONTEXT` (else 64).
        biases: `attention_bias` (q, k, v and o) and `mlp_bias` (gate, up, down).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    rope = {"rope_type": "default", **ROPE_SCALING.get(rope_scaling, {}), "rope_theta": ROPE_THETA}
    config = transformers.LlamaConfig(
        vocab_size=LLAMA_VOCAB,
        hidden_size=36,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=DYNAMIC_CONTEXT if rope_scaling == "dynamic" else 64,
        rms_norm_eps=1e-5,
        rope_parameters=rope,
        attention_bias=biases,
        mlp_bias=biases,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    name = "llama" + (f"_{rope_scaling}" if rope_scaling else "") + ("_biases" if biases else "")
    return _finish(transformers.LlamaForCausalLM(config), tmp_dir, name, seed)


def make_qwen2(tmp_dir, seed=0):
    """`Qwen2ForCausalLM`: vocab 103, width 30, 5 heads of 6 with 1 key/value head, 2 layers, FFN 41, tied head."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=QWEN2_VOCAB,
        hidden_size=30,
        intermediate_size=41,
        num_hidden_layers=2,
        num_attention_heads=5,
        num_key_value_heads=1,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
    )
    return _finish(transformers.Qwen2ForCausalLM(config), tmp_dir, "qwen2", seed)


def make_mistral(tmp_dir, seed=0):
    """`MistralForCausalLM`: vocab 89, width 32, 4 heads of 8 with 2 key/value heads, 2 layers, FFN 29, untied,
    sliding window `MISTRAL_WINDOW` (each query sees itself and the 3 keys before it)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.MistralConfig(
        vocab_size=MISTRAL_VOCAB,
        hidden_size=32,
        intermediate_size=29,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=MISTRAL_WINDOW,
        tie_word_embeddings=False,
    )
    return _finish(transformers.MistralForCausalLM(config), tmp_dir, "mistral", seed)


# design name -> (builder, vocabulary size), shared by the parity and generation tests.
DESIGNS = {
    "llama_biases": (functools.partial(make_llama, biases=True), LLAMA_VOCAB),
    "qwen2": (make_qwen2, QWEN2_VOCAB),
    "mistral": (make_mistral, MISTRAL_VOCAB),
    **{f"llama_{kind}": (functools.partial(make_llama, rope_scaling=kind), LLAMA_VOCAB) for kind in ROPE_SCALING},
}


def make(design, tmp_dir):
    """`(directory, model, vocabulary_size)` of a `DESIGNS` entry."""
    builder, vocabulary = DESIGNS[design]
    directory, model = builder(tmp_dir)
    return directory, model, vocabulary
