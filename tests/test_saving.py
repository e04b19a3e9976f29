"""kzoo.saving: `.keras` files are checked before Keras reads them, and kzoo models load in safe mode.

The refusal tests craft hostile files and prove that nothing happened before the refusal:
Keras' loader was never called (a spy replaces it), nothing was extracted, no file appeared
anywhere under the test's folder (the temporary folder included: `tempfile` points there),
and a marker file that the payload would create does not exist. Where Keras itself would run
the payload, a control load shows that the marker does appear without kzoo's checks.
"""

import json
import os
import pickle
import re
import stat
import sys
import tempfile
import warnings
import zipfile

import keras
import numpy as np
import pytest
from keras.src.saving import saving_lib

from kzoo import cli, models, saving
from kzoo.saving import ModelFileError
from tests.generate.helpers import tiny_gpt, tiny_seq2seq
from tests.harness import to_numpy

# --- helpers ------------------------------------------------------------------------------------


def _files_under(folder):
    """Every file and folder below `folder`, as relative paths."""
    found = set()
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def _members(path):
    """`{name: bytes}` of a zip archive."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_archive(path, members, config=None):
    """Writes `members` (a dict of name -> bytes, or a list of (ZipInfo or name, bytes)) as a zip,
    with `config` (a dict) as config.json when given. Returns `path`."""
    items = list(members.items()) if isinstance(members, dict) else list(members)
    if config is not None:
        items = [(name, data) for name, data in items if name != "config.json"]
        items.insert(0, ("config.json", json.dumps(config).encode()))
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are written on purpose
        for name, data in items:
            archive.writestr(name, data)
    return path


def _inputs_for(model, rng):
    """Random valid inputs for each named input of a kzoo task model (batch 2, length 6)."""
    arrays = {}
    for name in model.input:
        if name.endswith("padding_mask"):
            arrays[name] = np.ones((2, 6), "int32")
        elif name == "segment_ids":
            arrays[name] = np.zeros((2, 6), "int32")
        elif name == "mask_positions":
            arrays[name] = np.array([[1, 3], [0, 5]], "int32")
        else:
            arrays[name] = rng.integers(1, 50, (2, 6)).astype("int32")
    return arrays


def _bert(task):
    backbone = models.from_preset("bert_test", dropout=0.0)
    if task == "classifier":
        return models.BertClassifier(backbone, num_classes=3, dropout=0.0)
    if task == "tagger":
        return models.BertTokenClassifier(backbone, num_classes=5, dropout=0.0)
    if task == "qa":
        return models.BertSpanQA(backbone)
    return models.BertPretrainer(backbone)


FAMILIES = {
    "bert_classifier": lambda: _bert("classifier"),
    "bert_tagger": lambda: _bert("tagger"),
    "bert_qa": lambda: _bert("qa"),
    "bert_pretrainer": lambda: _bert("pretrainer"),
    "gpt_causal_lm": lambda: tiny_gpt(),
    "seq2seq_t5": lambda: tiny_seq2seq("t5"),
    "seq2seq_bart": lambda: tiny_seq2seq("bart"),
}


@pytest.fixture(scope="module")
def gpt_file(tmp_path_factory):
    """A valid kzoo `.keras` file (tiny GPTCausalLM), the base of the crafted files."""
    path = tmp_path_factory.mktemp("base") / "gpt.keras"
    tiny_gpt().save(path)
    return path


@pytest.fixture
def untouched(tmp_path, monkeypatch):
    """Spies on everything that would act on a file past kzoo's checks; `check()` asserts none of it ran.

    `tempfile` is pointed at an empty folder under `tmp_path`, so anything Keras would unpack there
    (it extracts assets with `tempfile.mkdtemp`) shows up in the before/after listing of `tmp_path`.
    """
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    calls = []

    def spy(label):
        def record(*args, **kwargs):
            calls.append(label)
            raise AssertionError(f"{label} was called for a file kzoo should have refused")
        return record

    monkeypatch.setattr(keras.saving, "load_model", spy("keras.saving.load_model"))
    monkeypatch.setattr(saving_lib, "load_model", spy("saving_lib.load_model"))  # what kzoo calls
    monkeypatch.setattr(zipfile.ZipFile, "extract", spy("ZipFile.extract"))
    monkeypatch.setattr(zipfile.ZipFile, "extractall", spy("ZipFile.extractall"))

    class Watch:
        def __init__(self):
            self.before = None

        def start(self):
            self.before = _files_under(tmp_path)

        def check(self):
            assert calls == []
            assert _files_under(tmp_path) == self.before
            assert os.listdir(private_tmp) == []

    return Watch()


# --- kzoo models load in safe mode, with no exceptions ------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_kzoo_models_round_trip_through_safe_loading(family, tmp_path, rng):
    model = FAMILIES[family]()
    inputs = _inputs_for(model, rng)
    expected = keras.tree.map_structure(to_numpy, model(inputs))
    path = tmp_path / f"{family}.keras"
    model.save(path)

    restored = saving.load_model(path)  # safe_mode=True, no custom_objects, no exceptions

    assert type(restored) is type(model)
    actual = keras.tree.map_structure(to_numpy, restored(inputs))
    keras.tree.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), actual, expected)


def test_a_file_swapped_in_after_the_checks_is_not_what_keras_loads(tmp_path, monkeypatch):
    """The checks and Keras read one open file: replacing the path between them changes nothing."""
    checked = _bert("classifier")
    path = tmp_path / "model.keras"
    checked.save(path)
    other = tmp_path / "other.keras"
    tiny_gpt().save(other)
    check_archive = saving._check_archive

    def check_then_swap(*args):
        check_archive(*args)
        os.replace(other, path)  # an attacker's file takes the checked file's name

    monkeypatch.setattr(saving, "_check_archive", check_then_swap)
    loaded = saving.load_model(path)
    assert type(loaded) is models.BertClassifier  # the checked file, not the one now at `path`
    assert json.loads(_members(path)["config.json"])["class_name"] == "GPTCausalLM"


def _kzoo_classes():
    """Every Layer, optimizer and schedule subclass defined in kzoo (after importing the modules that define them)."""
    import kzoo.layers
    import kzoo.models
    import kzoo.train.optimization  # noqa: F401

    bases = (keras.layers.Layer, keras.optimizers.Optimizer, keras.optimizers.schedules.LearningRateSchedule)
    found, pending = set(), list(bases)
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found:
                found.add(subclass)
                pending.append(subclass)
    return sorted((c for c in found if c.__module__.startswith("kzoo.")), key=lambda c: c.__qualname__)


def test_every_public_kzoo_class_is_registered_under_kzoo():
    # Private bases (leading underscore) and the abstract Backbone / Task are never saved themselves.
    abstract = {models.Backbone, models.Task}
    classes = [c for c in _kzoo_classes() if not c.__name__.startswith("_") and c not in abstract]
    assert {"GPTCausalLM", "BertSpanQA", "Seq2SeqLM", "DecoderBlock", "WarmupDecay"} <= {c.__name__ for c in classes}
    unregistered = [c.__qualname__ for c in classes
                    if keras.saving.get_registered_object(f"kzoo>{c.__name__}") is not c]
    assert unregistered == []


@pytest.mark.filterwarnings("ignore:`compile\\(\\)` was not called")  # kzoo tasks compile themselves
def test_compile_config_is_checked_only_when_compiling(gpt_file, tmp_path):
    from kzoo.train.optimization import WarmupDecay

    model = _bert("classifier")
    model.compile(optimizer=keras.optimizers.AdamW(WarmupDecay(1e-3, total_steps=10, warmup_steps=2)))
    compiled = tmp_path / "compiled.keras"
    model.save(compiled)
    assert "kzoo>WarmupDecay" in _members(compiled)["config.json"].decode()
    assert type(saving.load_model(compiled, compile=True)) is models.BertClassifier

    # Keras drops the top-level compile_config when compile=False, so a lambda there is never built.
    config = json.loads(_members(gpt_file)["config.json"])
    config["compile_config"] = {"loss": {"class_name": "__lambda__", "config": {"code": "", "defaults": None,
                                                                                 "closure": None}}}
    crafted = _write_archive(tmp_path / "lambda_loss.keras", _members(gpt_file), config)
    assert type(saving.load_model(crafted, compile=False)) is models.GPTCausalLM
    with pytest.raises(ModelFileError, match=r"Python lambda .* at GPTCausalLM\('gpt_causal_lm'\)\.compile_config"):
        saving.load_model(crafted, compile=True)


# --- hostile files are refused before any side effect -------------------------------------------


def _lambda_model_file(folder, marker):
    """A functional model whose Lambda layer creates `marker` whenever the layer is called (Keras calls it
    while it rebuilds the model from config.json)."""
    inputs = keras.Input((3,), name="x")
    marker_path = str(marker)  # reaches the lambda as a closure cell, which Keras serializes with its code
    touch = lambda x: x + 0.0 * len(open(marker_path, "a").name)  # noqa: E731
    outputs = keras.layers.Lambda(touch, name="payload")(inputs)
    path = folder / "lambda.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Model(inputs, outputs, name="crafted").save(path)
    os.remove(marker)  # building the model called the layer once
    return path


def test_lambda_layer_refused_before_any_side_effect(tmp_path, untouched):
    marker = tmp_path / "lambda_ran"
    path = _lambda_model_file(tmp_path, marker)
    untouched.start()
    with pytest.raises(ModelFileError) as refused:
        saving.load_model(path)
    message = str(refused.value)
    assert "Lambda layer" in message and "crafted" in message and "payload" in message
    assert "re-save the model with kzoo" in message and "safe_mode=False" in message
    assert not marker.exists()
    untouched.check()


def test_lambda_payload_runs_without_the_checks(tmp_path):
    """The control for the test above: Keras with safe mode off does run the payload."""
    marker = tmp_path / "lambda_ran"
    path = _lambda_model_file(tmp_path, marker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


def test_python_lambda_nested_in_a_config_value_is_refused(gpt_file, tmp_path, untouched):
    config = json.loads(_members(gpt_file)["config.json"])
    code = {"class_name": "__lambda__", "config": {"code": "AAAA", "defaults": None, "closure": None}}
    config["config"]["backbone"]["config"]["activation"] = code
    path = _write_archive(tmp_path / "nested.keras", _members(gpt_file), config)
    untouched.start()
    with pytest.raises(ModelFileError, match=r"Python lambda .* at GPTCausalLM\('gpt_causal_lm'\)\.backbone/"
                                             r"GPTBackbone\('gpt_backbone'\)\.activation"):
        saving.load_model(path)
    untouched.check()


MEMBER_CASES = {
    "parent_traversal": ("assets/../../../escaped.txt", "'..' (parent directory)"),
    "absolute_path": ("/tmp/kzoo_escaped.txt", "an absolute path"),
    "drive_letter": ("C:/kzoo_escaped.txt", "a drive letter"),
    "backslash": ("assets\\..\\..\\escaped.txt", "a backslash"),
    "dot_component": ("assets/./escaped.txt", "'.' path component"),
    "unexpected_member": ("payload.py", "does not have: 'payload.py'"),
    "duplicate_config": ("config.json", "twice"),
}


@pytest.mark.parametrize("case", sorted(MEMBER_CASES))
def test_unsafe_member_names_refused_with_no_file_written(case, gpt_file, tmp_path, untouched):
    name, expected = MEMBER_CASES[case]
    content = b'{"class_name": "Functional"}' if name == "config.json" else b"escaped"
    path = _write_archive(tmp_path / "crafted.keras", [*_members(gpt_file).items(), (name, content)])
    untouched.start()
    with pytest.raises(ModelFileError, match=re.escape(expected)) as refused:
        saving.load_model(path)
    assert "Only load .keras files you trust" in str(refused.value)
    assert not os.path.exists("/tmp/kzoo_escaped.txt")
    untouched.check()


def test_symlink_member_refused(gpt_file, tmp_path, untouched):
    link = zipfile.ZipInfo("assets/vocab.txt")
    link.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _write_archive(tmp_path / "link.keras", [*_members(gpt_file).items(), (link, b"/etc/passwd")])
    untouched.start()
    with pytest.raises(ModelFileError, match="symbolic link as archive member 'assets/vocab.txt'"):
        saving.load_model(path)
    untouched.check()


def test_decompression_bomb_refused_before_inflating(gpt_file, tmp_path, monkeypatch, untouched):
    monkeypatch.setattr(saving, "BOMB_FLOOR_BYTES", 1 << 20)  # the real floor (64 MiB) would make the test slow
    bomb = zipfile.ZipInfo("assets/zeros.bin")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    path = _write_archive(tmp_path / "bomb.keras", [*_members(gpt_file).items(), (bomb, bytes(8 << 20))])
    assert os.path.getsize(path) < 200_000
    untouched.start()
    with pytest.raises(ModelFileError, match="decompression bomb"):
        saving.load_model(path)
    untouched.check()


def test_an_unchanged_copy_of_the_base_file_passes(gpt_file, tmp_path):
    """The crafted files differ from this one only by what their tests refuse."""
    path = _write_archive(tmp_path / "copy.keras", _members(gpt_file))
    assert type(saving.load_model(path)) is models.GPTCausalLM


def test_not_a_zip_is_not_a_keras_file(tmp_path, untouched):
    text = tmp_path / "model.keras"
    text.write_text("not a zip archive")
    untouched.start()
    with pytest.raises(ModelFileError, match="not a .keras file: it is not a zip archive"):
        saving.load_model(text)
    with pytest.raises(ModelFileError, match="not a .keras file"):
        saving.load_model(tmp_path)  # a directory
    untouched.check()
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        saving.load_model(tmp_path / "missing.keras")


def test_zip_under_another_name_is_refused(gpt_file, tmp_path):
    path = _write_archive(tmp_path / "model.zip", _members(gpt_file))
    with pytest.raises(ModelFileError, match="not a .keras file"):
        saving.load_model(path)


class _ForeignLayer(keras.layers.Layer):
    """Stands for a class some other package registered."""


@pytest.mark.parametrize("case", ["unknown_module", "unregistered_kzoo", "foreign_registration", "keras_hub"])
def test_classes_outside_kzoo_and_core_keras_are_refused(case, gpt_file, tmp_path, monkeypatch, untouched):
    config = json.loads(_members(gpt_file)["config.json"])
    backbone = config["config"]["backbone"]
    if case == "unknown_module":
        backbone.update(module="kzoo_test_payload_module", class_name="Payload", registered_name=None)
        expected = "'Payload' from module 'kzoo_test_payload_module', which is neither kzoo nor core Keras"
    elif case == "unregistered_kzoo":
        backbone.update(module="kzoo.layers.blocks", class_name="_TransformerBlock", registered_name=None)
        expected = "kzoo.layers.blocks._TransformerBlock, which is not a registered kzoo class"
    elif case == "foreign_registration":
        monkeypatch.setitem(keras.saving.get_custom_objects(), "thirdparty>Payload", _ForeignLayer)
        backbone.update(module="thirdparty", class_name="Payload", registered_name="thirdparty>Payload")
        expected = "'Payload', registered by tests.test_saving"
    else:
        backbone.update(module="keras_hub.src.models.gpt2.gpt2_backbone", class_name="GPT2Backbone",
                        registered_name=None)
        expected = "'GPT2Backbone' from module 'keras_hub.src.models.gpt2.gpt2_backbone'"
    path = _write_archive(tmp_path / "foreign.keras", _members(gpt_file), config)
    imported_before = set(sys.modules)
    untouched.start()
    with pytest.raises(ModelFileError) as refused:
        saving.load_model(path)
    message = str(refused.value)
    assert expected in message
    assert "at GPTCausalLM('gpt_causal_lm').backbone/" in message
    assert not {name for name in set(sys.modules) - imported_before if "payload" in name or "keras_hub" in name}
    untouched.check()


# --- the command line prints the refusal and exits 2 ---------------------------------------------


def test_generate_cli_refuses_a_crafted_file_with_exit_2(tmp_path, capsys, untouched):
    marker = tmp_path / "lambda_ran"
    path = _lambda_model_file(tmp_path, marker)
    untouched.start()
    assert cli.main(["generate", str(path), "--ids", "5 6 7"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("kzoo generate: ") and "Lambda layer" in error and "Traceback" not in error
    assert not marker.exists()
    untouched.check()


def test_export_cli_refuses_a_crafted_file_with_exit_2(gpt_file, tmp_path, capsys, untouched):
    path = _write_archive(tmp_path / "traversal.keras", [*_members(gpt_file).items(),
                                                        ("assets/../../escaped.txt", b"escaped")])
    untouched.start()
    assert cli.main(["export", str(path), "--output", str(tmp_path / "exported")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("kzoo export: ") and "'..' (parent directory)" in error
    untouched.check()


# --- pickled PyTorch checkpoints ----------------------------------------------------------------
# tests/convert/test_hf_checkpoint.py covers the refusal message, reading with allow_pickle and
# safetensors being preferred; these add that a refused pickle is never unpickled.


class _Payload:
    """Unpickling this creates the file `path` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "a")


def _pickle_checkpoint(folder, marker):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Payload(marker)}, protocol=2))
    return folder


def test_pickle_payload_runs_when_unpickled(tmp_path):
    """The control for the tests below: unpickling the checkpoint does create the marker."""
    marker = tmp_path / "pickle_ran"
    folder = _pickle_checkpoint(tmp_path / "checkpoint", marker)
    pickle.loads((folder / "pytorch_model.bin").read_bytes()).get("weight").close()
    assert marker.exists()


def test_pickle_checkpoint_refused_unless_allowed_and_never_unpickled(tmp_path, capsys):
    from kzoo.convert.hf_checkpoint import read_hf_checkpoint

    marker = tmp_path / "pickle_ran"
    folder = _pickle_checkpoint(tmp_path / "checkpoint", marker)
    with pytest.raises(ValueError, match="only PyTorch pickle weights"):
        read_hf_checkpoint(folder)
    output = tmp_path / "out.keras"
    assert cli.main(["convert", str(folder), "--output", str(output)]) == 2
    assert "pickle" in capsys.readouterr().err
    assert not marker.exists() and not output.exists()


def test_allowed_pickle_is_read_weights_only(tmp_path):
    pytest.importorskip("torch")
    from kzoo.convert.hf_checkpoint import read_hf_checkpoint

    marker = tmp_path / "pickle_ran"
    folder = _pickle_checkpoint(tmp_path / "checkpoint", marker)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_hf_checkpoint(folder, allow_pickle=True)
    assert not marker.exists()



# --- declared sizes must match the weights the file holds -----------------------------------------


def _with_backbone_config(base, path, **changes):
    """A copy of the kzoo file `base` whose backbone config has `changes` (weights untouched)."""
    members = _members(base)
    config = json.loads(members["config.json"])
    config["config"]["backbone"]["config"].update(changes)
    return _write_archive(path, members, config)


SIZE_EDITS = {  # the edits: each used to hang for minutes, exhaust memory or load a model without weights
    "num_layers_100000": ({"num_layers": 100_000}, r"declares a GPTCausalLM with [\d,]+ parameters, but "
                                                   r"model\.weights\.h5 holds 5,440 values"),
    "vocabulary_2_33": ({"vocabulary_size": 2**33}, r"declares a GPTCausalLM with 137,438,957,936 parameters"),
    "num_layers_minus_1": ({"num_layers": -1}, r"GPTConfig: `num_layers` must be a positive integer, got -1"),
    "num_layers_3": ({"num_layers": 3}, r"declares a GPTCausalLM with 7,400 parameters, but model\.weights\.h5 "
                                        r"holds 5,440 values"),
    "unknown_key": ({"bogus": 1}, r"GPTBackbone: unknown config key\(s\) \['bogus'\]"),
}


@pytest.mark.parametrize("case", sorted(SIZE_EDITS))
def test_declared_sizes_that_differ_from_the_weights_are_refused_at_once(case, gpt_file, tmp_path, untouched):
    import time

    changes, message = SIZE_EDITS[case]
    path = _with_backbone_config(gpt_file, tmp_path / "edited.keras", **changes)
    untouched.start()
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=message) as refused:
        saving.load_model(path)
    assert time.perf_counter() - started < 1.0  # nothing was built
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    untouched.check()


def test_a_nested_kzoo_model_may_not_declare_more_than_the_file_holds(tmp_path, untouched):
    backbone = models.GPTBackbone(vocabulary_size=61, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                                  max_sequence_length=32)
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in ("token_ids", "padding_mask")}
    wrapper = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)["sequence_output"]), name="wrapper")
    base = tmp_path / "wrapper.keras"
    wrapper.save(base)
    saving.check_model_file(base)  # the unedited file passes the checks
    members = _members(base)
    config = json.loads(members["config.json"])
    [entry] = [layer for layer in config["config"]["layers"] if layer["class_name"] == "GPTBackbone"]
    entry["config"]["num_layers"] = 100_000
    path = _write_archive(tmp_path / "edited.keras", members, config)
    untouched.start()
    with pytest.raises(ModelFileError, match=r"declares a GPTBackbone with [\d,]+ parameters at "
                                             r"Functional\('wrapper'\)\.layers\[\d\]/GPTBackbone"):
        saving.load_model(path)
    untouched.check()


def test_weights_that_declare_more_bytes_than_they_store_are_refused(tmp_path, untouched):
    """An HDF5 dataset can declare a shape its (compressed, fill-valued) storage never holds."""
    import h5py

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    base = tmp_path / "dense.keras"
    model.save(base)
    members = _members(base)
    weights = tmp_path / "weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "a") as handle:
        handle.create_dataset("layers/dense/vars/2", shape=(1 << 20, 1 << 10), dtype="float32", compression="gzip")
    path = _write_archive(tmp_path / "inflated.keras", {**members, "model.weights.h5": weights.read_bytes()})
    untouched.start()
    with pytest.raises(ModelFileError, match=r"model\.weights\.h5 declares [\d,]+ weight values \([\d,]+ bytes\) "
                                             r"in [\d,]+ bytes"):
        saving.load_model(path)
    untouched.check()


def test_npz_weights_are_refused_with_the_reason(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "npz.keras"
    saving_lib.save_model(model, str(path), weights_format="npz")
    with pytest.raises(ModelFileError, match=r"holds its weights as model\.weights\.npz, which Keras writes as "
                                             r"pickled object arrays"):
        saving.load_model(path)


# --- what Keras refuses is a ModelFileError too: one line naming the file ---------------------------


def _dense_file_keras_refuses(folder):
    """A plain Keras file that passes kzoo's checks but whose Dense config Keras rejects (a TypeError)."""
    base = folder / "dense.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")]).save(base)
    members = _members(base)
    config = json.loads(members["config.json"])
    [dense] = [layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]
    dense["config"]["bogus"] = 1
    return _write_archive(folder / "refused.keras", members, config)


def test_a_config_keras_rejects_is_a_model_file_error(tmp_path):
    path = _dense_file_keras_refuses(tmp_path)
    with pytest.raises(ModelFileError, match=rf"^cannot load {re.escape(str(path))}: TypeError: .*bogus") as refused:
        saving.load_model(path)
    assert "\n" not in str(refused.value)


def test_weights_of_other_shapes_are_a_model_file_error(gpt_file, tmp_path):
    """Same parameter count, other shapes (4 heads of 4 instead of 2 of 8): Keras refuses to assign them."""
    path = _with_backbone_config(gpt_file, tmp_path / "heads.keras", num_heads=4)
    with pytest.raises(ModelFileError, match=rf"^cannot load {re.escape(str(path))}: ValueError: ") as refused:
        saving.load_model(path)
    assert "\n" not in str(refused.value)


def _bad_weights_file(gpt_file, folder):
    return _write_archive(folder / "bad_weights.keras", {**_members(gpt_file), "model.weights.h5": b"not hdf5" * 64})


def test_unreadable_weights_are_a_model_file_error(gpt_file, tmp_path, untouched):
    path = _bad_weights_file(gpt_file, tmp_path)
    untouched.start()
    with pytest.raises(ModelFileError, match=r"model\.weights\.h5 is not a readable HDF5 weights file"):
        saving.load_model(path)
    untouched.check()


@pytest.mark.parametrize("which", ["keras_refuses", "bad_weights"])
@pytest.mark.parametrize("command", [
    "generate", "export", pytest.param("train", marks=pytest.mark.backend(
        "tensorflow", reason="the loader refuses the file before training starts; the JAX run covers that loader "
        "through generate and export"))])
def test_every_command_prints_one_line_and_exits_2(command, which, gpt_file, tmp_path, capsys):
    """`kzoo eval` of a gpt_finetune run reaches the same `load_checkpoint` (after its checkpoint check)."""
    path = _dense_file_keras_refuses(tmp_path) if which == "keras_refuses" else _bad_weights_file(gpt_file, tmp_path)
    if command == "generate":
        argv = ["generate", str(path), "--ids", "5 6 7"]
    elif command == "export":
        argv = ["export", str(path), "--output", str(tmp_path / "exported")]
    else:
        argv = ["train", "gpt_finetune", f"--model.checkpoint={path}", f"--train.output_dir={tmp_path / 'run'}"]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # recipes exit from inside `run_recipe`
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2, error
    assert "Traceback" not in error and error.count("\n") == 1 and str(path) in error
    assert ("cannot load" in error) if which == "keras_refuses" else ("not a readable HDF5" in error)
