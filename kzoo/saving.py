"""Loading `.keras` files that may come from someone else, without running their code.

`load_model` is what every kzoo entry point uses to open a `.keras` file. Before Keras
reads the file it checks, by reading only the zip directory and `config.json` into
memory (nothing is extracted or written, and nothing the file names is imported or run):

- the file is a zip archive with a `.keras` name;
- every member name is a plain relative path (no absolute path, drive letter,
  backslash, `.`/`..` or empty component) and no member is a symlink or other special
  file, so nothing can be written outside a folder when Keras extracts the assets;
- the members are those Keras 3 writes: `config.json`, `metadata.json`, one of
  `model.weights.h5` / `model.weights.npz`, and files under `assets/`;
- the declared uncompressed sizes stay within a bound relative to the file's size
  (a decompression bomb is refused before anything is inflated);
- every serialized object in `config.json` is a kzoo-registered class or a core Keras
  class or function: no `Lambda` (or other layer that wraps foreign code), no Python
  lambda (`__lambda__`), no class from another module (which Keras would try to import);
- the sizes `config.json` declares match the weights `model.weights.h5` holds: a kzoo
  model's parameter count is computed from its config (its family config validates every
  size; nothing is built) and must equal the number of values in the weights file (its
  dataset shapes, read from the HDF5 metadata only), which must in turn fit in the
  member's bytes. For a Keras-quantized model (`model.quantize`) the count is what its
  quantized layers store, from the map of quantized layer paths in its backbone's `dtype`
  (int8 kernels and their scales, int4 kernels packed two per byte with their scales and
  zero points, float8 scales and histories: `kzoo.models.quantization.quantized_values`), and a
  path in that map that is not one of the model's projections is refused. A kzoo model
  nested in another Keras model may not declare more parameters than the file holds. So
  an edited size (`num_layers: 100000`, a vocabulary of 2**33, `num_layers: -1`) is
  refused in milliseconds instead of hanging, exhausting memory, or loading a model that
  ignores the file's weights.

Then Keras loads the model (`compile=...`, `safe_mode=...`) from the same open file the checks
read, so a file swapped in at `path` after the checks is never what Keras reads. `safe_mode` is
True by default, so Keras' own safe mode is a second line of defence. A refusal, by kzoo's checks
or by Keras (a config its classes reject, unreadable weights, weights of the wrong shape), raises
`ModelFileError` with one line naming the file and the reason: every kzoo command loads `.keras`
files through `load_model` and prints that line.
"""

import json
import os
import re
import stat
import zipfile
import zlib

from kzoo.messages import one_line

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHTS_MEMBER = "model.weights.h5"
# Keras can also write `model.weights.npz`, but stores its variables there as pickled object arrays
# that its own loader (allow_pickle=False) cannot read back: such a file is refused with that reason.
NPZ_WEIGHTS_MEMBER = "model.weights.npz"
WEIGHTS_MEMBERS = (WEIGHTS_MEMBER, NPZ_WEIGHTS_MEMBER)
ASSETS_PREFIX = "assets/"
# Top-level group of `model.weights.h5` that holds the optimizer's state, not the model's weights.
OPTIMIZER_GROUP = "optimizer"
MAX_MESSAGE_CHARACTERS = 400

# Keras writes its members stored (uncompressed), so the declared sizes add up to about the
# file's size. Re-zipping with deflate shrinks weights a little and text a few times; far
# more than this ratio is a decompression bomb. Small files get a fixed floor instead.
MAX_EXPANSION_RATIO = 20
BOMB_FLOOR_BYTES = 64 << 20
MAX_CONFIG_BYTES = 64 << 20
MAX_MEMBERS = 10_000
MAX_CONFIG_DEPTH = 200

# Layers whose whole purpose is to run code (or load a graph) named by the file.
CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
# Keras' plain-data markers in a config: values, not classes or code.
DATA_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"})

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_TRUSTED_PACKAGES = ("keras", "kzoo")

_SAFE_ADVICE = (
    "Only load .keras files you trust. If this one is yours, re-save the model with kzoo "
    "(model.save(path) on a kzoo model); if you trust its source and need the extra classes, "
    "load it with keras.saving.load_model(path, safe_mode=False) directly, outside kzoo."
)


class ModelFileError(ValueError):
    """A `.keras` file that `kzoo.saving.load_model` refuses; the message says what was found and what to do."""


def load_model(path, *, compile=False, safe_mode=True):
    """Checks the `.keras` file at `path` (see the module docstring), then loads it with Keras.

    Args:
        path: str or path-like, a local `.keras` file.
        compile: bool, restore the optimizer, loss and metrics saved with the model (Keras' `compile`).
        safe_mode: bool, passed to Keras (which then refuses lambdas itself too). kzoo's checks run
            either way: a file that needs foreign code is loaded with Keras directly, not through kzoo.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: no file at `path`.
        ModelFileError: the file is not a `.keras` archive, or it holds something kzoo refuses to load.
    """
    path = os.fspath(path)
    _check_path(path)
    with open(path, "rb") as handle:  # one open file for the checks and for Keras
        _check_archive(handle, path, compile)
        handle.seek(0)
        try:
            return _keras_load(handle, compile, safe_mode)
        except ModelFileError:
            raise
        except (TypeError, ValueError, KeyError, OSError) as error:  # Keras refused the file
            raise ModelFileError(f"cannot load {path}: {_keras_reason(error)}. Re-save the model with kzoo "
                                 "(model.save(path)) or pass another .keras file.") from error


def _keras_load(handle, compile, safe_mode):
    """Keras' `.keras` loader on an open file: what `keras.saving.load_model(path)` runs after
    opening the path itself (Keras 3 `saving_lib.load_model` takes a file object)."""
    from keras.src.saving import saving_lib

    return saving_lib.load_model(handle, compile=compile, safe_mode=safe_mode)


def _keras_reason(error):
    """One line from a Keras error: the wrapped cause of a deserialization error (Keras appends it
    after the whole config), else the message's lines joined, shortened."""
    text = str(error)
    marker = "Exception encountered:"
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    reason = f"{type(error).__name__}: {one_line(text) or '(no message)'}".rstrip(".")
    if len(reason) > MAX_MESSAGE_CHARACTERS:
        reason = reason[:MAX_MESSAGE_CHARACTERS - 3] + "..."
    return reason


def check_model_file(path, *, compile=False):
    """Raises `ModelFileError` unless the file at `path` passes the archive and config checks.

    Reads only the zip directory and `config.json` (into memory). `compile=False` skips the
    top-level `compile_config`, which Keras then does not deserialize either. Imports kzoo's own
    modules (only) so that their classes are registered when the config is checked.
    """
    path = os.fspath(path)
    _check_path(path)
    with open(path, "rb") as handle:
        _check_archive(handle, path, compile)


def _check_path(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} not found; pass the path of a .keras file.")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise ModelFileError(
            f"{path} is not a .keras file: kzoo loads only the single-file .keras format (a zip archive "
            "written by model.save('NAME.keras'))."
        )


def _check_archive(handle, path, compile):
    """The archive and config checks on the open file `handle` (named `path` in messages)."""
    try:
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            check_members(infos, os.fstat(handle.fileno()).st_size, path)
            config, text = _read_config(archive, path)
            _register_kzoo_classes(optimizers=compile or b'"kzoo.train.' in text)
            check_config(config, compile=compile, source=path)
            check_declared_sizes(config, archive, path)
    except zipfile.BadZipFile as error:
        raise ModelFileError(
            f"{path} is not a .keras file: it is not a zip archive ({error}). A .keras file is the zip "
            "archive Keras writes with model.save('NAME.keras')."
        ) from None
    except (NotImplementedError, RuntimeError, EOFError, zlib.error) as error:  # encrypted, odd compression, cut
        raise ModelFileError(f"{path} is not a readable .keras archive ({error}). Re-save the model with kzoo "
                             "(model.save(path)).") from None


def check_members(infos, file_size, source="the archive"):
    """Refuses unsafe member names, special files, a layout Keras does not write, and declared-size bombs."""
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{source} has {len(infos):,} archive members (a .keras file has a handful). "
                             + _SAFE_ADVICE)
    seen = set()
    for info in infos:
        _check_member_name(info, source)
        _check_member_type(info, source)
        if info.filename in seen:
            raise ModelFileError(f"{source} holds the member {info.filename!r} twice; Keras never writes that. "
                                 + _SAFE_ADVICE)
        seen.add(info.filename)
    _check_layout(seen, source)
    _check_declared_size(infos, file_size, source)


def _check_member_name(info, source):
    """A member name must be a plain relative path that stays inside the extraction folder."""
    for name in {info.orig_filename, info.filename}:
        problem = _name_problem(name)
        if problem:
            raise ModelFileError(
                f"{source} holds an archive member with {problem}: {name!r}. Extracting it could write "
                f"outside the target folder, so the file is refused before anything is extracted. {_SAFE_ADVICE}"
            )


def _name_problem(name):
    """What is wrong with the member name `name`, or None."""
    if not name:
        return "an empty name"
    if any(ord(character) < 32 for character in name):
        return "a control character in its name"
    if name.startswith("/"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash in its path"
    if _DRIVE_LETTER.match(name):
        return "a drive letter"
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if ".." in parts:
        return "a '..' (parent directory) component"
    if any(part in ("", ".") for part in parts):
        return "an empty or '.' path component"
    return None


def _check_member_type(info, source):
    """Only regular files and directories: a symlink entry could point extraction anywhere."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind in (0, stat.S_IFREG, stat.S_IFDIR):
        return
    what = "a symbolic link" if kind == stat.S_IFLNK else f"a special file (mode {oct(kind)})"
    raise ModelFileError(f"{source} holds {what} as archive member {info.filename!r}; a .keras file holds "
                         f"only regular files. {_SAFE_ADVICE}")


def _check_layout(names, source):
    """The members must be those of a Keras 3 `.keras` archive (see keras/src/saving/saving_lib.py)."""
    allowed = {CONFIG_MEMBER, METADATA_MEMBER, *WEIGHTS_MEMBERS}
    unexpected = sorted(name for name in names if name not in allowed and not name.startswith(ASSETS_PREFIX))
    if unexpected:
        shown = ", ".join(repr(name) for name in unexpected[:5])
        raise ModelFileError(
            f"{source} holds archive members a Keras .keras file does not have: {shown} (expected config.json, "
            f"metadata.json, model.weights.h5 or model.weights.npz, and files under assets/). {_SAFE_ADVICE}"
        )
    if CONFIG_MEMBER not in names:
        raise ModelFileError(f"{source} has no config.json, so it is not a Keras .keras file.")
    if NPZ_WEIGHTS_MEMBER in names:
        raise ModelFileError(f"{source} holds its weights as {NPZ_WEIGHTS_MEMBER}, which Keras writes as pickled "
                             "object arrays that neither Keras' loader nor kzoo reads. Re-save the model with kzoo "
                             f"(model.save(path) writes {WEIGHTS_MEMBER}).")
    if WEIGHTS_MEMBER not in names:
        raise ModelFileError(f"{source} has no {WEIGHTS_MEMBER}, so it holds no weights. Re-save the model with "
                             "kzoo (model.save(path)).")


def _check_declared_size(infos, file_size, source):
    """The members together may not declare far more bytes than the file stores (a decompression bomb)."""
    declared = sum(info.file_size for info in infos)
    bound = max(BOMB_FLOOR_BYTES, MAX_EXPANSION_RATIO * file_size)
    if declared > bound:
        raise ModelFileError(
            f"{source} declares {declared:,} uncompressed bytes in a {file_size:,}-byte file (more than "
            f"{bound:,}): a potential decompression bomb, refused before anything is inflated. {_SAFE_ADVICE}"
        )


def _read_config(archive, source):
    """`(parsed config.json, its bytes)`, read into memory with a size cap."""
    info = archive.getinfo(CONFIG_MEMBER)
    if info.file_size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{source} has a {info.file_size:,}-byte config.json (the limit is "
                             f"{MAX_CONFIG_BYTES:,}). {_SAFE_ADVICE}")
    with archive.open(info) as handle:
        text = handle.read(MAX_CONFIG_BYTES + 1)
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{source} has a config.json that is not valid JSON ({error}).") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{source} has a config.json that does not describe a Keras object "
                             "(no top-level class_name).")
    return config, text


def check_declared_sizes(config, archive, source="the archive"):
    """Refuses a file whose `config.json` declares sizes its `model.weights.h5` does not hold.

    `config` is the parsed `config.json` (already checked by `check_config`) and `archive` the open
    `zipfile.ZipFile`. A top-level kzoo model must declare exactly the parameters stored; a kzoo model
    nested in another Keras model at most that many. Nothing is built: the counts come from the
    configs (`kzoo.models.backbone.count_serialized_parameters`) and from the HDF5 dataset shapes.
    """
    from kzoo.models.backbone import count_serialized_parameters

    stored, stored_bytes = stored_parameter_count(archive, source)
    member_size = archive.getinfo(WEIGHTS_MEMBER).file_size
    if stored_bytes > member_size:
        raise ModelFileError(
            f"{source}: {WEIGHTS_MEMBER} declares {stored:,} weight values ({stored_bytes:,} bytes) in "
            f"{member_size:,} bytes; Keras never compresses weights, so the file is inconsistent. {_SAFE_ADVICE}"
        )
    for where, entry in _kzoo_models(config, "", depth=0):
        try:
            declared = count_serialized_parameters(entry)
        except (ValueError, TypeError, KeyError) as error:
            raise ModelFileError(f"{source}: config.json declares an invalid model at {where}: {error} "
                                 "Fix the config or re-save the model with kzoo (model.save(path)).") from None
        if declared is None:
            continue
        if entry is config and declared != stored:
            raise ModelFileError(
                f"{source}: config.json declares a {entry.get('class_name')} with {declared:,} parameters, but "
                f"{WEIGHTS_MEMBER} holds {stored:,} values: the sizes in config.json do not match the weights "
                "(an edited or mismatched file). Restore the original config.json or re-save the model with "
                "kzoo (model.save(path))."
            )
        if declared > stored:
            raise ModelFileError(
                f"{source}: config.json declares a {entry.get('class_name')} with {declared:,} parameters at "
                f"{where}, more than the {stored:,} values {WEIGHTS_MEMBER} holds. Restore the original "
                "config.json or re-save the model with kzoo (model.save(path))."
            )


def _kzoo_models(value, where, depth):
    """`(location, entry)` of every serialized kzoo backbone or task in a config, outermost first (the
    nested backbone of a task is counted as part of the task, so it is not listed separately)."""
    from kzoo.models.backbone import registered_class

    if depth > MAX_CONFIG_DEPTH:
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _kzoo_models(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, dict):
        if "class_name" in value:
            where = _object_location(value, where)
            model_class = registered_class(value)
            if model_class is not None and _is_kzoo_model(model_class):
                yield where, value
                return
        for key, item in value.items():
            if key == "config" and isinstance(item, dict):  # the object's own arguments, as `_walk` names them
                for argument, nested in item.items():
                    yield from _kzoo_models(nested, f"{where}.{argument}", depth + 2)
            else:
                yield from _kzoo_models(item, f"{where}.{key}", depth + 1)


def _is_kzoo_model(model_class):
    from kzoo.models.backbone import Backbone, Task

    return isinstance(model_class, type) and issubclass(model_class, (Backbone, Task))


def stored_parameter_count(archive, source="the archive"):
    """`(values, bytes)` of the model weights in the archive's `model.weights.h5` (the optimizer's
    state excluded), from the HDF5 dataset shapes: no weight data is read."""
    import h5py

    totals = [0, 0]

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and name.split("/", 1)[0] != OPTIMIZER_GROUP:
            size = 1
            for dimension in item.shape or ():
                size *= int(dimension)
            totals[0] += size
            totals[1] += size * item.dtype.itemsize

    try:
        with archive.open(WEIGHTS_MEMBER) as member, h5py.File(member, "r") as weights:
            weights.visititems(visit)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelFileError(f"{source}: {WEIGHTS_MEMBER} is not a readable HDF5 weights file ({error}). Re-save "
                             "the model with kzoo (model.save(path)).") from None
    return totals[0], totals[1]


def check_config(config, *, compile=False, source="config.json"):
    """Refuses a model config that names a code-carrying layer, a Python lambda or a class kzoo does not trust.

    `config` is the parsed `config.json`. With `compile=False` the top-level `compile_config` is
    skipped: Keras drops it before deserializing. Nested ones are checked (Keras would apply them).
    """
    config = dict(config)
    if not compile:
        config.pop("compile_config", None)
    _walk(config, "", source, depth=0)


def _walk(value, where, source, depth):
    """Checks every serialized object (a dict with `class_name`) nested in `value`."""
    if depth > MAX_CONFIG_DEPTH:
        raise ModelFileError(f"{source}: the model config nests deeper than {MAX_CONFIG_DEPTH} levels at "
                             f"{where or 'the top'}. {_SAFE_ADVICE}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]", source, depth + 1)
    elif isinstance(value, dict):
        if "class_name" in value:
            where = _object_location(value, where)
            _check_object(value, where, source)
        for key, item in value.items():
            if key != "config" or not isinstance(item, dict):
                _walk(item, f"{where}.{key}", source, depth + 1)
            else:  # the object's own arguments: shown as `Class('name').argument`
                for argument, nested in item.items():
                    _walk(nested, f"{where}.{argument}", source, depth + 2)


def _object_location(entry, where):
    """`where` extended with the object's class and name, e.g. `Functional('m').layers[2]/Lambda('f')`."""
    class_name = entry.get("class_name")
    inner = entry.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    label = f"{class_name}({name!r})" if isinstance(name, str) else str(class_name)
    return f"{where}/{label}" if where else label


def _check_object(entry, where, source):
    """One serialized object must resolve to something kzoo trusts, without importing anything."""
    class_name = entry.get("class_name")
    module = entry.get("module")
    if not isinstance(class_name, str):
        _refuse(source, where, f"a class_name that is not a string ({class_name!r})")
    if class_name == "__lambda__":
        _refuse(source, where, "a Python lambda (serialized bytecode, run when the model is built)")
    if class_name in DATA_MARKERS:
        return
    if class_name.startswith("__"):
        _refuse(source, where, f"the special entry {class_name!r}, which kzoo models never contain")
    if class_name in CODE_LAYERS:
        _refuse(source, where, f"a {class_name} layer, which runs code or loads a graph named by the file")
    resolved = _registered(entry, class_name)
    if resolved is not None:
        origin = getattr(resolved, "__module__", None) or "an unknown module"
        if not _trusted_module(origin) or getattr(resolved, "__name__", None) in CODE_LAYERS:
            _refuse(source, where, f"{class_name!r}, registered by {origin} (neither kzoo nor core Keras)")
        return
    if class_name == "function" and module == "builtins":
        _check_builtin_function(entry, where, source)
        return
    if isinstance(module, str) and _trusted_module(module, package="keras"):
        return  # core Keras: resolved from Keras' own API (Keras refuses its non-modeling functions)
    if isinstance(module, str) and _trusted_module(module, package="kzoo"):
        _refuse(source, where, f"{module}.{class_name}, which is not a registered kzoo class (saved by a "
                               "newer or modified kzoo?)")
    _refuse(source, where, f"{class_name!r} from module {module!r}, which is neither kzoo nor core Keras "
                           "(Keras would import it)")


def _registered(entry, class_name):
    """The registered object Keras would pick for `entry` (registrations come first in Keras), or None."""
    from keras.saving import get_registered_object

    key = entry.get("config") if class_name == "function" else entry.get("registered_name", class_name)
    return get_registered_object(key) if isinstance(key, str) else None


def _check_builtin_function(entry, where, source):
    """Keras looks a `builtins` function up among its own activations, losses, metrics, ..., then among
    registered objects named `package>name`: those must come from kzoo or Keras too."""
    from keras.saving import get_custom_objects

    name = entry.get("config")
    if not isinstance(name, str):
        _refuse(source, where, f"a function entry whose name is not a string ({name!r})")
    for key, registered in get_custom_objects().items():
        origin = getattr(registered, "__module__", None) or "an unknown module"
        if key.endswith(">" + name) and not _trusted_module(origin):
            _refuse(source, where, f"the function {name!r}, which resolves to {key!r} registered by {origin}")


def _trusted_module(module, package=None):
    """Whether `module` is (inside) kzoo or keras, or inside `package` when given."""
    packages = (package,) if package else _TRUSTED_PACKAGES
    return any(module == name or module.startswith(name + ".") for name in packages)


def _refuse(source, where, what):
    raise ModelFileError(f"{source}: the model config holds {what} at {where}. kzoo refuses to load it. "
                         + _SAFE_ADVICE)


def _register_kzoo_classes(optimizers):
    """Imports the kzoo modules whose classes a saved model can name, so they are registered with Keras.

    kzoo's optimizer and schedule classes appear only in compile configs, and `kzoo.train` imports
    TensorFlow (seconds under JAX), so it is imported only when `optimizers` is true.
    """
    import kzoo.layers  # registers the kzoo layers
    import kzoo.models  # registers the backbones and tasks

    if optimizers:
        import kzoo.train.optimization  # noqa: F401
