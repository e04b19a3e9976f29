import json
import os
import sys

import keras
import numpy as np
import pytest
import safetensors.numpy as safetensors_numpy

from kzoo.convert import HFCheckpoint, WeightReader, assign, hf_checkpoint, read_hf_checkpoint
from kzoo.convert.hf_checkpoint import (
    TOKENIZER_FILES,
    SafetensorsWeights,
    _read_safetensors_raw,
    linear_to_kernel,
    merge_heads_out,
    split_heads_in,
)
from tests.convert import hf_fixtures

FIXTURES = {
    "bert": hf_fixtures.make_bert,
    "gpt2": hf_fixtures.make_gpt2,
    "t5": hf_fixtures.make_t5,
    "t5_gated": lambda tmp: hf_fixtures.make_t5(tmp, gated=True),
    "bart": hf_fixtures.make_bart,
}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """All fixture checkpoints, built once: name -> (directory, torch model)."""
    import torch  # noqa: F401  (test extra: a missing reference must fail, not skip)
    import transformers  # noqa: F401
    root = tmp_path_factory.mktemp("hf")
    return {name: make(root) for name, make in FIXTURES.items()}


def _write_config(directory, **config):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config or {"model_type": "test"}, f)


def _small_weights():
    rng = np.random.default_rng(0)
    return {
        "encoder.layer.0.dense.weight": rng.normal(size=(5, 3)).astype("float32"),
        "encoder.layer.0.dense.bias": rng.normal(size=(5,)).astype("float32"),
        "encoder.layer.1.dense.weight": rng.normal(size=(5, 5)).astype("float32"),
        "embeddings.word_embeddings.weight": rng.normal(size=(7, 3)).astype("float32"),
        "embeddings.position_ids": np.arange(4, dtype="int64")[None],
    }


# --- Reading the fixture checkpoints ------------------------------------------------


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_checkpoint_matches_state_dict(hf_models, name):
    directory, model = hf_models[name]
    ckpt = read_hf_checkpoint(directory)
    assert isinstance(ckpt, HFCheckpoint)
    assert ckpt.weights_format == "safetensors"
    assert ckpt.directory == os.path.abspath(directory)
    assert ckpt.config["model_type"] == model.config.model_type
    assert ckpt.config["vocab_size"] == model.config.vocab_size

    state = model.state_dict()
    assert ckpt.weights, "no weights read"
    assert set(ckpt.weights) <= set(state)
    for key, value in ckpt.weights.items():
        assert value.dtype == np.float32, key
        np.testing.assert_array_equal(value, state[key].detach().numpy(), err_msg=key)

    # Names that Hugging Face leaves out of the file must be tied (same storage) to
    # a stored tensor; nothing else may be missing.
    stored_ptrs = {state[k].untyped_storage().data_ptr() for k in ckpt.weights}
    for key in set(state) - set(ckpt.weights):
        assert state[key].untyped_storage().data_ptr() in stored_ptrs, f"{key} missing and not tied"


# Tied copies dropped from the file by save_pretrained (checked with transformers 5.23).
EXPECTED_DEDUPED = {
    "bert": {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"},
    "gpt2": {"lm_head.weight"},
    "t5": {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"},
    "t5_gated": {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"},
    "bart": {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"},
}


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_deduplicated_tied_weights(hf_models, name):
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip(f"transformers {transformers.__version__} names tied weights differently; the expected "
                    "deduplicated names were recorded with transformers 5.x, which the test extra installs")
    directory, model = hf_models[name]
    ckpt = read_hf_checkpoint(directory)
    assert set(model.state_dict()) - set(ckpt.weights) == EXPECTED_DEDUPED[name]


def test_t5_variants_differ_in_lm_head(hf_models):
    tied = read_hf_checkpoint(hf_models["t5"][0])
    untied = read_hf_checkpoint(hf_models["t5_gated"][0])
    assert "lm_head.weight" not in tied.weights
    assert not np.allclose(untied.weights["lm_head.weight"], untied.weights["shared.weight"])
    assert "encoder.block.0.layer.1.DenseReluDense.wi.weight" in tied.weights
    assert "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in untied.weights
    assert tied.config["feed_forward_proj"] == "relu"
    assert untied.config["feed_forward_proj"] == "gated-gelu"
    # The decoder output is scaled by d_model**-0.5 only for the tied (v1.0) head.
    assert hf_models["t5"][1].config.scale_decoder_outputs is True
    assert hf_models["t5_gated"][1].config.scale_decoder_outputs is False


def test_fixtures_have_odd_sizes(hf_models):
    bert = hf_models["bert"][1].config
    assert (bert.vocab_size, bert.hidden_size, bert.intermediate_size) == (101, 24, 37)
    assert bert.hidden_size // bert.num_attention_heads == 6
    gpt2 = hf_models["gpt2"][1].config
    assert gpt2.n_embd // gpt2.n_head == 10 and gpt2.n_inner == 37
    t5 = hf_models["t5"][1].config
    assert t5.num_heads * t5.d_kv != t5.d_model
    assert (t5.relative_attention_num_buckets, t5.relative_attention_max_distance) == (8, 20)
    bart = hf_models["bart"][1].config
    assert bart.max_position_embeddings == 64 and not bart.scale_embedding


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixtures_randomize_every_parameter(hf_models, name):
    model = hf_models[name][1]
    assert not model.training
    for key, param in model.named_parameters():
        values = param.detach().numpy()
        assert values.std() > 0.05, f"{key} looks like a constant initialisation"


def test_fixtures_are_deterministic(tmp_path):
    _, a = hf_fixtures.make_gpt2(tmp_path / "a", seed=3)
    _, b = hf_fixtures.make_gpt2(tmp_path / "b", seed=3)
    _, c = hf_fixtures.make_gpt2(tmp_path / "c", seed=4)
    wa, wb, wc = (m.state_dict()["transformer.h.0.ln_1.bias"].numpy() for m in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(wa, wc)


def test_fixture_weights_can_all_be_taken(hf_models):
    reader = WeightReader(read_hf_checkpoint(hf_models["bart"][0]))
    for key in reader.names():
        reader.take(key)
    reader.finish()


def test_random_ids():
    ids, mask = hf_fixtures.random_ids(5, 9, 31, seed=1, pad_id=1)
    assert ids.shape == mask.shape == (5, 9)
    assert ids.dtype == mask.dtype == np.int32
    assert mask[0].all() and not mask[1].all()
    assert np.all(mask[:, 0] == 1)
    # Right padding: once a row is padded it stays padded.
    assert np.all(np.diff(mask, axis=1) <= 0)
    assert np.all(ids[mask == 0] == 1) and not np.any(ids[mask == 1] == 1)
    assert ids.min() >= 0 and ids.max() < 31
    again, _ = hf_fixtures.random_ids(5, 9, 31, seed=1, pad_id=1)
    np.testing.assert_array_equal(ids, again)
    _, full = hf_fixtures.random_ids(4, 6, 31, seed=2, padding=False)
    assert full.all()


# --- safetensors variants ---------------------------------------------------------------


def test_sharded_safetensors(tmp_path):
    weights = _small_weights()
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[:2], "model-00002-of-00002.safetensors": names[2:]}
    weight_map = {}
    for shard, keys in shards.items():
        safetensors_numpy.save_file({k: weights[k] for k in keys}, str(tmp_path / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    _write_config(tmp_path)

    ckpt = read_hf_checkpoint(tmp_path)
    assert ckpt.weights_format == "safetensors"
    assert set(ckpt.weights) == set(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(ckpt.weights[key], value)
    assert ckpt.weights["embeddings.position_ids"].dtype == np.int64

    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        read_hf_checkpoint(tmp_path)


def test_shard_index_listing_absent_weight(tmp_path):
    safetensors_numpy.save_file({"a": np.ones(2, "float32")}, str(tmp_path / "s1.safetensors"))
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}, f)
    _write_config(tmp_path)
    with pytest.raises(ValueError, match="'b'|b"):
        read_hf_checkpoint(tmp_path)


def test_bf16_and_fp16_safetensors_decode_to_float32(tmp_path):
    import torch
    from safetensors.torch import save_file

    exact = torch.tensor([1.0, -2.5, 0.15625, 3.140625, -0.0, 65280.0, 1e-38])
    rng = torch.Generator().manual_seed(0)
    tensors = {
        "exact": exact.to(torch.bfloat16),
        "random": torch.randn(3, 5, 7, generator=rng).to(torch.bfloat16),
        "half": torch.randn(4, 3, generator=rng).half(),
        "scalar": torch.tensor(0.1).to(torch.bfloat16),
        "ids": torch.arange(6).reshape(2, 3),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    _write_config(tmp_path)

    # safetensors.numpy reads bfloat16 only when ml_dtypes has registered the dtype
    # with NumPy (keras imports it); otherwise the hand-written decoder is used.
    # Check both paths.
    _check_decoded(read_hf_checkpoint(tmp_path).weights, tensors, exact)
    raw = _read_safetensors_raw(str(tmp_path / "model.safetensors"))
    assert raw.pop("half").dtype == np.float16  # The raw decoder widens only bfloat16.
    _check_decoded(raw, tensors, exact)


def _check_decoded(weights, tensors, exact):
    for key in ("exact", "random", "half", "scalar"):
        if key not in weights:
            continue
        assert weights[key].dtype == np.float32, key
        assert weights[key].shape == tuple(tensors[key].shape), key
        np.testing.assert_array_equal(weights[key], tensors[key].float().numpy(), err_msg=key)
    np.testing.assert_array_equal(weights["exact"][:6], exact.numpy()[:6])
    assert weights["scalar"] == np.float32(0.10009765625)  # 0.1 rounded to bfloat16
    assert weights["ids"].dtype == np.int64
    np.testing.assert_array_equal(weights["ids"], np.arange(6).reshape(2, 3))


def test_raw_safetensors_reader_matches_library(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {
        "f64": rng.normal(size=(2, 3)),
        "f32": rng.normal(size=(4,)).astype("float32"),
        "f16": rng.normal(size=(3, 1, 2)).astype("float16"),
        "i32": rng.integers(-5, 5, size=(5,)).astype("int32"),
        "u8": rng.integers(0, 255, size=(2, 2)).astype("uint8"),
        "empty": np.zeros((0, 3), "float32"),
    }
    path = str(tmp_path / "x.safetensors")
    safetensors_numpy.save_file(tensors, path, metadata={"format": "np"})
    raw = _read_safetensors_raw(path)
    assert set(raw) == set(tensors)
    for key, value in tensors.items():
        assert raw[key].dtype == value.dtype, key
        np.testing.assert_array_equal(raw[key], value, err_msg=key)


# --- Lazy reading ------------------------------------------------------------------------


def _write_sharded(directory, weights, split=2):
    """Writes `weights` as two safetensors shards plus their index; returns the shard names."""
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[:split], "model-00002-of-00002.safetensors": names[split:]}
    weight_map = {}
    for shard, keys in shards.items():
        safetensors_numpy.save_file({k: weights[k] for k in keys}, str(directory / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    with open(directory / "model.safetensors.index.json", "w") as f:
        json.dump({"weight_map": weight_map}, f)
    _write_config(directory)
    return list(shards)


@pytest.fixture
def count_reads(monkeypatch):
    """Counts the tensors read from safetensors files: `count_reads()` -> reads so far."""
    reads = []
    original = hf_checkpoint._read_entry

    def counting(entry, file=None):
        reads.append(entry)
        return original(entry, file)

    monkeypatch.setattr(hf_checkpoint, "_read_entry", counting)
    return lambda: len(reads)


@pytest.mark.backend("tensorflow", reason="file reading only: no Keras computation")
def test_sharded_weights_are_read_only_when_accessed(tmp_path, count_reads):
    weights = _small_weights()
    shards = _write_sharded(tmp_path, weights)
    ckpt = read_hf_checkpoint(tmp_path)
    lazy = ckpt.weights
    assert isinstance(lazy, SafetensorsWeights)
    assert lazy.files() == [str(tmp_path / shard) for shard in shards]
    # Names, count, membership and shapes come from the headers: no tensor read.
    assert sorted(lazy) == sorted(weights) and len(lazy) == len(weights)
    assert "encoder.layer.1.dense.weight" in lazy and "nope" not in lazy
    assert lazy.shape("encoder.layer.1.dense.weight") == (5, 5)
    assert lazy.stored_dtype("embeddings.position_ids") == "I64"
    assert count_reads() == 0
    first = lazy["encoder.layer.0.dense.weight"]
    assert count_reads() == 1
    np.testing.assert_array_equal(first, weights["encoder.layer.0.dense.weight"])
    # Nothing is cached: a second access reads again and returns a new array of its own.
    first[:] = 0
    again = lazy["encoder.layer.0.dense.weight"]
    assert count_reads() == 2 and again is not first
    np.testing.assert_array_equal(again, weights["encoder.layer.0.dense.weight"])
    with pytest.raises(KeyError):
        lazy["nope"]


@pytest.mark.backend("tensorflow", reason="file reading only: no Keras computation")
def test_weight_reader_over_lazy_weights_reads_only_what_it_takes(tmp_path, count_reads):
    weights = _small_weights()
    _write_sharded(tmp_path, weights)
    reader = WeightReader(read_hf_checkpoint(tmp_path))
    assert reader.names() == sorted(weights) and reader.has("embeddings.position_ids")
    assert count_reads() == 0
    np.testing.assert_array_equal(reader.take("encoder.layer.0.dense.bias"), weights["encoder.layer.0.dense.bias"])
    assert reader.peek("embeddings.position_ids").dtype == np.int64
    assert count_reads() == 2
    with pytest.raises(ValueError, match="Similar names: encoder.layer.0.dense.weight"):
        reader.take("encoder.layer.0.dense.kernel")
    with pytest.raises(ValueError) as info:
        reader.finish()
    message = str(info.value)
    assert "encoder.layer.1.dense.weight [5, 5]" in message and "embeddings.position_ids [1, 4]" in message
    assert "encoder.layer.0.dense.bias" not in message
    assert count_reads() == 2  # The unused-weight listing takes its shapes from the headers.


@pytest.mark.backend("tensorflow", reason="counts file reads of the converter; the backend does not change them")
def test_import_reads_each_tensor_once(hf_models, count_reads):
    from kzoo.convert import from_huggingface

    directory, _ = hf_models["gpt2"]
    stored = len(read_hf_checkpoint(directory).weights)
    from_huggingface(directory)
    assert count_reads() == stored


def _write_raw_safetensors(path, header, data):
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)


@pytest.mark.backend("tensorflow", reason="file reading only: no Keras computation")
def test_float8_safetensors_decode_to_float32(tmp_path):
    import ml_dtypes

    values = np.array([[0.5, -1.75, 3.0], [0.0, 448.0, -0.015625]], np.float32)
    e4m3, e5m2 = values.astype(ml_dtypes.float8_e4m3fn), values.astype(ml_dtypes.float8_e5m2)
    header = {
        "a": {"dtype": "F8_E4M3", "shape": [2, 3], "data_offsets": [0, 6]},
        "b": {"dtype": "F8_E5M2", "shape": [2, 3], "data_offsets": [6, 12]},
    }
    _write_raw_safetensors(tmp_path / "model.safetensors", header, e4m3.tobytes() + e5m2.tobytes())
    _write_config(tmp_path)
    weights = read_hf_checkpoint(tmp_path).weights
    assert weights["a"].dtype == weights["b"].dtype == np.float32
    np.testing.assert_array_equal(weights["a"], e4m3.astype(np.float32))
    np.testing.assert_array_equal(weights["b"], e5m2.astype(np.float32))


@pytest.mark.backend("tensorflow", reason="file reading only: no Keras computation")
@pytest.mark.parametrize(
    ("entry", "data", "message"),
    [
        ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, bytes(20), "lie outside the 20 data bytes"),
        ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}, bytes(24), "20 bytes of F32 do not fill"),
        ({"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}, bytes(16), "unsupported safetensors dtype 'C64'"),
        ({"dtype": "F32", "shape": [2]}, bytes(8), "malformed header entry"),
    ],
)
def test_malformed_safetensors_fail_when_read_not_when_used(tmp_path, entry, data, message):
    _write_raw_safetensors(tmp_path / "model.safetensors", {"w": entry}, data)
    _write_config(tmp_path)
    with pytest.raises(ValueError, match=f"'w'.*model.safetensors.*{message}"):
        read_hf_checkpoint(tmp_path)


# --- PyTorch pickles -------------------------------------------------------------------


def _torch_state(torch):
    gen = torch.Generator().manual_seed(0)
    return {
        "dense.weight": torch.randn(4, 3, generator=gen),
        "dense.bias": torch.randn(4, generator=gen).to(torch.bfloat16),
        "position_ids": torch.arange(5)[None],
    }


def test_bin_refused_without_allow_pickle(tmp_path):
    import torch
    torch.save(_torch_state(torch), tmp_path / "pytorch_model.bin")
    _write_config(tmp_path)
    with pytest.raises(ValueError) as info:
        read_hf_checkpoint(tmp_path)
    message = str(info.value)
    for part in ("pytorch_model.bin", "pickle", "run arbitrary code", "safetensors", "allow_pickle=True"):
        assert part in message


def test_bin_read_with_allow_pickle(tmp_path):
    import torch
    state = _torch_state(torch)
    torch.save(state, tmp_path / "pytorch_model.bin")
    _write_config(tmp_path)
    ckpt = read_hf_checkpoint(tmp_path, allow_pickle=True)
    assert ckpt.weights_format == "pytorch"
    assert set(ckpt.weights) == set(state)
    np.testing.assert_array_equal(ckpt.weights["dense.weight"], state["dense.weight"].numpy())
    assert ckpt.weights["dense.bias"].dtype == np.float32
    np.testing.assert_array_equal(ckpt.weights["dense.bias"], state["dense.bias"].float().numpy())
    assert ckpt.weights["position_ids"].dtype == np.int64


def test_sharded_bin_with_allow_pickle(tmp_path):
    import torch
    state = _torch_state(torch)
    torch.save({"dense.weight": state["dense.weight"]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"dense.bias": state["dense.bias"]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {"dense.weight": "pytorch_model-00001-of-00002.bin", "dense.bias": "pytorch_model-00002-of-00002.bin"}
    with open(tmp_path / "pytorch_model.bin.index.json", "w") as f:
        json.dump({"weight_map": weight_map}, f)
    _write_config(tmp_path)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_hf_checkpoint(tmp_path)
    ckpt = read_hf_checkpoint(tmp_path, allow_pickle=True)
    assert ckpt.weights_format == "pytorch"
    assert set(ckpt.weights) == {"dense.weight", "dense.bias"}


def test_safetensors_preferred_over_bin(tmp_path):
    import torch
    torch.save({"old": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    safetensors_numpy.save_file({"new": np.ones(2, "float32")}, str(tmp_path / "model.safetensors"))
    _write_config(tmp_path)
    ckpt = read_hf_checkpoint(tmp_path)  # No allow_pickle needed.
    assert ckpt.weights_format == "safetensors"
    assert set(ckpt.weights) == {"new"}


def test_bin_without_torch_says_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    _write_config(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # Makes `import torch` raise ImportError.
    with pytest.raises(ImportError, match="pip install torch"):
        read_hf_checkpoint(tmp_path, allow_pickle=True)


# --- Errors ------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        read_hf_checkpoint(missing)


def test_path_is_a_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a directory"):
        read_hf_checkpoint(tmp_path / "config.json")


def test_missing_config(tmp_path):
    safetensors_numpy.save_file({"a": np.ones(2, "float32")}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"No config\.json.*model\.safetensors"):
        read_hf_checkpoint(tmp_path)


def test_invalid_config_json(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert",')
    safetensors_numpy.save_file({"a": np.ones(2, "float32")}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        read_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_hf_checkpoint(tmp_path)


def test_no_weights_lists_files_and_accepted_names(tmp_path):
    _write_config(tmp_path)
    (tmp_path / "tf_model.h5").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        read_hf_checkpoint(tmp_path)
    message = str(info.value)
    assert "No weights found" in message and str(tmp_path) in message
    assert "tf_model.h5" in message and "config.json" in message  # What is there.
    assert "model.safetensors" in message and "pytorch_model.bin" in message  # What is accepted.


def test_corrupt_safetensors(tmp_path):
    _write_config(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="model.safetensors"):
        read_hf_checkpoint(tmp_path)


# --- Tokenizer files ---------------------------------------------------------------------


def test_tokenizer_files_discovery(tmp_path, monkeypatch):
    _write_config(tmp_path)
    safetensors_numpy.save_file({"a": np.ones(2, "float32")}, str(tmp_path / "model.safetensors"))
    present = ["vocab.txt", "merges.txt", "vocab.json", "tokenizer.json", "special_tokens_map.json"]
    for name in present + ["notes.txt", "generation_config.json"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "spiece.model").mkdir()  # A directory is not a tokenizer file.
    monkeypatch.chdir(tmp_path.parent)
    ckpt = read_hf_checkpoint(tmp_path.name)  # Relative paths come back absolute.
    assert ckpt.tokenizer_files == {name: str(tmp_path / name) for name in present}
    assert all(os.path.isabs(p) for p in ckpt.tokenizer_files.values())
    assert set(ckpt.tokenizer_files) <= set(TOKENIZER_FILES)


def test_no_tokenizer_files(tmp_path):
    _write_config(tmp_path)
    safetensors_numpy.save_file({"a": np.ones(2, "float32")}, str(tmp_path / "model.safetensors"))
    assert read_hf_checkpoint(tmp_path).tokenizer_files == {}


# --- WeightReader --------------------------------------------------------------------------


def test_weight_reader_take_has_names():
    weights = _small_weights()
    reader = WeightReader(weights)
    assert reader.names() == sorted(weights)
    assert reader.has("encoder.layer.0.dense.bias") and not reader.has("nope")
    np.testing.assert_array_equal(reader.take("encoder.layer.0.dense.bias"), weights["encoder.layer.0.dense.bias"])
    reader.take("encoder.layer.0.dense.bias")  # Taking twice is fine (tied weights).
    assert reader.take_optional("nope") is None
    assert reader.take_optional("encoder.layer.1.dense.weight") is not None
    assert "encoder.layer.0.dense.bias" not in reader.unused()
    assert "encoder.layer.1.dense.weight" not in reader.unused()


def test_weight_reader_finish_lists_every_unused_name():
    reader = WeightReader(_small_weights())
    reader.take("encoder.layer.0.dense.weight")
    with pytest.raises(ValueError) as info:
        reader.finish()
    message = str(info.value)
    assert "unused weights in checkpoint" in message
    for name in (
        "encoder.layer.0.dense.bias",
        "encoder.layer.1.dense.weight",
        "embeddings.word_embeddings.weight",
        "embeddings.position_ids",
    ):
        assert name in message
    assert "encoder.layer.0.dense.weight " not in message
    assert "[5, 5]" in message  # Shapes are shown.


def test_weight_reader_ignore_forms():
    reader = WeightReader(_small_weights())
    assert reader.ignore("embeddings.position_ids") == ["embeddings.position_ids"]
    assert reader.ignore("absent.buffer") == []  # Absent names are fine.
    assert reader.ignore(lambda n: n.startswith("encoder.layer.1.")) == ["encoder.layer.1.dense.weight"]
    reader.ignore(["encoder.layer.0.dense.bias", "also.absent"])
    assert reader.unused() == ["embeddings.word_embeddings.weight", "encoder.layer.0.dense.weight"]
    reader.take("embeddings.word_embeddings.weight")
    reader.take("encoder.layer.0.dense.weight")
    reader.finish()  # Everything accounted for.
    with pytest.raises(TypeError):
        reader.ignore(3)


def test_weight_reader_missing_name_suggests_close_names():
    reader = WeightReader(_small_weights())
    with pytest.raises(ValueError) as info:
        reader.take("encoder.layer.0.dense.kernel")
    message = str(info.value)
    assert "'encoder.layer.0.dense.kernel' not found" in message
    assert "encoder.layer.0.dense.weight" in message and "encoder.layer.0.dense.bias" in message
    with pytest.raises(ValueError, match="No similar names.*embeddings.position_ids"):
        reader.take("zzz")


def test_weight_reader_suggestions_are_capped():
    reader = WeightReader({f"layer.{i}.weight": np.zeros(1) for i in range(40)})
    with pytest.raises(ValueError) as info:
        reader.take("layer.5.weigth")
    suggestions = str(info.value).split("Similar names: ")[1].split(", ")
    assert 1 <= len(suggestions) <= 10
    assert "layer.5.weight" in suggestions


# --- assign and layout helpers -------------------------------------------------------------


def test_assign_checks_shape_and_casts():
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    value = np.arange(6, dtype="float64").reshape(2, 3)
    assign(layer.kernel, value, "dense.weight")
    got = keras.ops.convert_to_numpy(layer.kernel)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, value)
    with pytest.raises(ValueError) as info:
        assign(layer.kernel, value.T, "encoder.dense.weight")
    message = str(info.value)
    assert "encoder.dense.weight" in message and layer.kernel.path in message
    assert "(3, 2)" in message and "(2, 3)" in message
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), value)  # Unchanged.
    with pytest.raises(ValueError):
        assign(layer.bias, np.zeros((1, 3)), "dense.bias")  # No broadcasting.


def test_variables_built_for_an_import_are_created_by_their_assign():
    """Inside `weights_to_be_overwritten` a variable holds no value until its first `assign`, which creates it from
    the checkpoint's (zeros-then-assign held an extra copy of every weight at the peak): no initializer runs for an
    assigned weight, under TensorFlow the variable never shares the caller's array, a second assign and one to a
    variable made outside are written for real, a transposed view is laid out, symbolic calls still build the
    model, an unassigned variable gets its initial value at the end, and Keras' list of deferred variables keeps
    none of them (the next stateless scope would fail). Pins the Keras private API `kzoo.models.backbone` uses."""
    from kzoo.models.backbone import weights_to_be_overwritten

    class Refuses(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            raise AssertionError(f"initial values drawn for the assigned {shape} kernel")

    stored = np.arange(130 * 70, dtype="float32").reshape(130, 70)  # torch (out, in): over 64 x 64 tiles
    outside = keras.Variable(np.zeros(2), dtype="float32")
    with weights_to_be_overwritten():
        dense = keras.layers.Dense(130, kernel_initializer=Refuses())
        dense.build((None, 70))
        first = np.ones((70, 130), "float32")
        assign(dense.kernel, first, "dense.weight")
        first += 1
        if keras.backend.backend() == "tensorflow":  # JAX may take an aligned NumPy array without copying it
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.kernel), np.ones((70, 130)))
        assign(dense.kernel, linear_to_kernel(stored), "dense.weight")
        assign(outside, np.ones(2), "outside")
        inputs = keras.Input((70,))  # the bias, still without a value, is read symbolically
        model = keras.Model(inputs, keras.layers.Dropout(0.5)(dense(inputs)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.kernel), stored.T)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.bias), np.zeros(130))  # its initializer's
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outside), np.ones(2))
    x = np.ones((1, 70), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), x @ stored.T, rtol=1e-6)
    with keras.StatelessScope():  # exits by initializing Keras' deferred variables: none of ours may be there
        pass


def test_linear_to_kernel_matches_torch_linear():
    import torch
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 3)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype("float32")
    want = linear(torch.from_numpy(x)).detach().numpy()
    kernel = linear_to_kernel(linear.weight.detach().numpy())
    assert kernel.shape == (5, 3)
    np.testing.assert_allclose(x @ kernel + linear.bias.detach().numpy(), want, atol=1e-6)
    with pytest.raises(ValueError):
        linear_to_kernel(np.zeros(3))


def test_head_helpers_match_concatenated_heads():
    rng = np.random.default_rng(0)
    b, s, d, h, k, out = 2, 3, 7, 3, 5, 4
    x = rng.normal(size=(b, s, d))
    w_in = rng.normal(size=(d, h * k))  # (in, h*k) kernel.
    bias = rng.normal(size=(h * k,))
    # Hugging Face: project, then view the last axis as (h, k).
    want_heads = (x @ w_in + bias).reshape(b, s, h, k)
    got_heads = np.einsum("bsd,dhk->bshk", x, split_heads_in(w_in, h)) + split_heads_in(bias, h)
    np.testing.assert_allclose(got_heads, want_heads, atol=1e-12)

    w_out = rng.normal(size=(h * k, out))  # (h*k, out) kernel.
    want_out = want_heads.reshape(b, s, h * k) @ w_out
    got_out = np.einsum("bshk,hko->bso", got_heads, merge_heads_out(w_out, h))
    np.testing.assert_allclose(got_out, want_out, atol=1e-12)

    assert split_heads_in(w_in, h).shape == (d, h, k)
    assert merge_heads_out(w_out, h).shape == (h, k, out)
    with pytest.raises(ValueError, match="not divisible"):
        split_heads_in(w_in, 4)
    with pytest.raises(ValueError, match="not divisible"):
        merge_heads_out(w_out, 2)
