"""Writes a Hugging Face checkpoint directory with random weights, one tensor at a time.

For import benchmarks (`tools/bench_import.py`) and tests: `config.json` in transformers'
format, the weights as safetensors shards (`model-0000i-of-0000n.safetensors` plus
`model.safetensors.index.json`, as `save_pretrained` writes them; a single
`model.safetensors` when everything fits one shard). The model is never held in memory:
each shard's header is computed from the shapes first, then each tensor is drawn and
written in chunks of at most `CHUNK_ELEMENTS` values, so a 1.1B-parameter checkpoint
needs well under 100 MB of RAM to write.

Values: projection and embedding weights are normal with standard deviation
`initializer_range` (0.02, as transformers initialises them), norm scales 1 + N(0, 0.1),
biases N(0, 0.02); tensor `i` draws from `np.random.default_rng([seed, i])`, so the
values do not depend on the shard size. bfloat16/float16 files hold those float32 values
rounded to nearest.

Usage:
    .venv/bin/python tools/make_random_checkpoint.py /tmp/tinyllama --preset tinyllama_1_1b
    .venv/bin/python tools/make_random_checkpoint.py /tmp/tiny --preset llama_tiny --dtype bfloat16
    .venv/bin/python tools/make_random_checkpoint.py /tmp/tinyllama --preset tinyllama_1_1b --num-layers 2
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# Values drawn and written per chunk (16M float32 = 64 MB).
CHUNK_ELEMENTS = 1 << 24
SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}

# Llama-style configs in transformers' `LlamaConfig` fields.
LLAMA_PRESETS = {
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T: 1,100,048,384 parameters.
    "tinyllama_1_1b": dict(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
        num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    ),
    # Odd sizes for tests: head dim 6, 2 key/value heads shared by 4 query heads.
    "llama_tiny": dict(
        vocab_size=97, hidden_size=24, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    ),
}
# GPT-2 configs in transformers' `GPT2Config` fields (the LM head is tied, so not stored).
GPT2_PRESETS = {
    "gpt2_small": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024),
    "gpt2_tiny": dict(vocab_size=97, n_embd=20, n_layer=2, n_head=2, n_positions=64),
}
PRESETS = sorted([*LLAMA_PRESETS, *GPT2_PRESETS])


def llama_checkpoint(hf):
    """`(config.json dict, [(name, shape, kind)])` of a `LlamaForCausalLM`; kind picks the values."""
    config = dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", attention_bias=False,
        mlp_bias=False, initializer_range=0.02, rope_scaling=None, use_cache=True, pretraining_tp=1, **hf,
    )
    d, inner = hf["hidden_size"], hf["intermediate_size"]
    head_dim = d // hf["num_attention_heads"]
    kv = hf["num_key_value_heads"] * head_dim
    tensors = [("model.embed_tokens.weight", (hf["vocab_size"], d), "weight")]
    for index in range(hf["num_hidden_layers"]):
        p = f"model.layers.{index}"
        tensors += [
            (f"{p}.input_layernorm.weight", (d,), "scale"),
            (f"{p}.self_attn.q_proj.weight", (d, d), "weight"),
            (f"{p}.self_attn.k_proj.weight", (kv, d), "weight"),
            (f"{p}.self_attn.v_proj.weight", (kv, d), "weight"),
            (f"{p}.self_attn.o_proj.weight", (d, d), "weight"),
            (f"{p}.post_attention_layernorm.weight", (d,), "scale"),
            (f"{p}.mlp.gate_proj.weight", (inner, d), "weight"),
            (f"{p}.mlp.up_proj.weight", (inner, d), "weight"),
            (f"{p}.mlp.down_proj.weight", (d, inner), "weight"),
        ]
    tensors.append(("model.norm.weight", (d,), "scale"))
    if not hf["tie_word_embeddings"]:
        tensors.append(("lm_head.weight", (hf["vocab_size"], d), "weight"))
    return config, tensors


def gpt2_checkpoint(hf):
    """`(config.json dict, [(name, shape, kind)])` of a `GPT2LMHeadModel` (Conv1D weights are `(in, out)`)."""
    config = dict(
        architectures=["GPT2LMHeadModel"], model_type="gpt2", n_inner=None, activation_function="gelu_new",
        layer_norm_epsilon=1e-5, initializer_range=0.02, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=True, bos_token_id=hf["vocab_size"] - 1, eos_token_id=hf["vocab_size"] - 1, **hf,
    )
    d = hf["n_embd"]
    tensors = [("transformer.wte.weight", (hf["vocab_size"], d), "weight"),
               ("transformer.wpe.weight", (hf["n_positions"], d), "weight")]
    for index in range(hf["n_layer"]):
        p = f"transformer.h.{index}"
        tensors += [
            (f"{p}.ln_1.weight", (d,), "scale"), (f"{p}.ln_1.bias", (d,), "bias"),
            (f"{p}.attn.c_attn.weight", (d, 3 * d), "weight"), (f"{p}.attn.c_attn.bias", (3 * d,), "bias"),
            (f"{p}.attn.c_proj.weight", (d, d), "weight"), (f"{p}.attn.c_proj.bias", (d,), "bias"),
            (f"{p}.ln_2.weight", (d,), "scale"), (f"{p}.ln_2.bias", (d,), "bias"),
            (f"{p}.mlp.c_fc.weight", (d, 4 * d), "weight"), (f"{p}.mlp.c_fc.bias", (4 * d,), "bias"),
            (f"{p}.mlp.c_proj.weight", (4 * d, d), "weight"), (f"{p}.mlp.c_proj.bias", (d,), "bias"),
        ]
    tensors += [("transformer.ln_f.weight", (d,), "scale"), ("transformer.ln_f.bias", (d,), "bias")]
    return config, tensors


def checkpoint_spec(preset, num_layers=None):
    """`(config.json dict, [(name, shape, kind)])` for a preset, optionally with another layer count."""
    if preset in LLAMA_PRESETS:
        hf = dict(LLAMA_PRESETS[preset])
        if num_layers is not None:
            hf["num_hidden_layers"] = num_layers
        return llama_checkpoint(hf)
    if preset in GPT2_PRESETS:
        hf = dict(GPT2_PRESETS[preset])
        if num_layers is not None:
            hf["n_layer"] = num_layers
        return gpt2_checkpoint(hf)
    raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def _values(kind, count, rng, std):
    """`count` float32 values for a tensor of `kind` ("weight", "scale" or "bias")."""
    values = rng.standard_normal(count, dtype=np.float32)
    if kind == "weight":
        values *= std
    elif kind == "scale":
        values *= 0.1
        values += 1.0
    elif kind == "bias":
        values *= 0.02
    else:
        raise ValueError(f"unknown tensor kind {kind!r}")
    return values


def _itemsize(dtype):
    return 4 if dtype == "float32" else 2


def _encode(values, dtype):
    """float32 values -> a buffer of little-endian `dtype` values (rounded to nearest)."""
    if dtype == "float32":
        return memoryview(values.astype("<f4", copy=False))
    if dtype == "float16":
        return memoryview(values.astype("<f2"))
    import ml_dtypes

    return memoryview(values.astype(ml_dtypes.bfloat16).view("<u2"))


def _shards(tensors, itemsize, max_shard_bytes):
    """Splits `[(name, shape, kind)]` in order into lists whose data fits `max_shard_bytes`
    (a tensor larger than that gets a shard of its own)."""
    shards, current, size = [], [], 0
    for tensor in tensors:
        nbytes = math.prod(tensor[1]) * itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(tensor)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _write_shard(path, tensors, first_index, dtype, seed, std):
    """Writes one safetensors file: the header from the shapes, then each tensor in chunks."""
    itemsize = _itemsize(dtype)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        nbytes = math.prod(shape) * itemsize
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for index, (_, shape, kind) in enumerate(tensors, start=first_index):
            rng = np.random.default_rng([seed, index])
            remaining = math.prod(shape)
            while remaining:
                count = min(remaining, CHUNK_ELEMENTS)
                file.write(_encode(_values(kind, count, rng, std), dtype))
                remaining -= count
    return offset


def write_checkpoint(directory, preset, dtype="float32", seed=0, max_shard_bytes=2 * 1024**3, num_layers=None):
    """Writes `config.json` and random safetensors weights of `preset` into `directory`.

    Args:
        directory: created if needed; existing checkpoint files there are overwritten.
        preset: a key of `LLAMA_PRESETS` or `GPT2_PRESETS`.
        dtype: "float32", "bfloat16" or "float16" (the stored dtype; config.json says it too).
        seed: the same seed gives the same values, whatever the shard size.
        max_shard_bytes: largest data size of one shard file.
        num_layers: overrides the preset's layer count (smaller dry runs of a big preset).

    Returns:
        dict with `parameters` (total values written), `fp32_bytes` (4 per parameter),
        `files` (the weight files written) and `config`.
    """
    if dtype not in SAFETENSORS_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(SAFETENSORS_DTYPES)}")
    config, tensors = checkpoint_spec(preset, num_layers)
    config["torch_dtype"] = dtype
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as file:
        json.dump(config, file, indent=2, sort_keys=True)
    shards = _shards(tensors, _itemsize(dtype), max_shard_bytes)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)])
    for stale in ("model.safetensors", "model.safetensors.index.json"):
        if os.path.exists(os.path.join(directory, stale)):
            os.remove(os.path.join(directory, stale))
    weight_map, total, first = {}, 0, 0
    for name, shard in zip(names, shards, strict=True):
        total += _write_shard(os.path.join(directory, name), shard, first, dtype, seed, config["initializer_range"])
        first += len(shard)
        weight_map.update({tensor[0]: name for tensor in shard})
    if len(shards) > 1:
        with open(os.path.join(directory, "model.safetensors.index.json"), "w", encoding="utf-8") as file:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, file, indent=2)
    parameters = sum(math.prod(shape) for _, shape, _ in tensors)
    return {"parameters": parameters, "fp32_bytes": 4 * parameters, "files": names, "config": config}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="the checkpoint directory to write")
    parser.add_argument("--preset", default="tinyllama_1_1b", choices=PRESETS)
    parser.add_argument("--dtype", default="float32", choices=sorted(SAFETENSORS_DTYPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-layers", type=int, help="override the preset's layer count")
    parser.add_argument("--max-shard-mb", type=float, default=2048.0, help="largest shard, MiB (default 2048)")
    args = parser.parse_args(argv)
    written = write_checkpoint(args.directory, args.preset, args.dtype, args.seed,
                               int(args.max_shard_mb * 1024 * 1024), args.num_layers)
    print(f"wrote {args.directory}: {args.preset}, {written['parameters']:,} parameters as {args.dtype} "
          f"in {len(written['files'])} file(s) ({written['fp32_bytes'] / 1e9:.2f} GB as float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
