"""Atomic, verifiable training checkpoints with keep-N retention and fallback.

A checkpoint is a directory `<root>/step-<step:09d>/` holding:

- `state.npz`: every model variable (weights, and the random-seed states of dropout
  layers, so a resumed run draws the same masks) and every optimizer variable (step
  counter, moments, gradient accumulators, loss scale), keyed `model/<i>` and
  `optimizer/<i>` in the order Keras lists them;
- `meta.json`: the training step, the data position (global batches consumed), the
  variable paths and shapes, and the SHA-256 of `state.npz`.

  `meta.json` also records the run's configuration (`config`, what the checkpoints
  depend on: compared on resume) and the SHA-256 of its own other fields
  (`meta_sha256`), so an edited or damaged `meta.json` is detected like a damaged
  `state.npz`; its step must also match the folder name.

Writing goes to a temporary sibling directory that is renamed into place only when
complete and flushed, so a kill at any instant leaves either the previous set of
checkpoints or the new one, never a half-written one that looks whole. Loading
verifies both checksums, the step and the shapes; a damaged newest checkpoint is
skipped with a warning in favour of the previous good one. Retention counts only
checkpoints verified good for this model (and always keeps the one just restored and
the one just written), so damaged folders can never push the good ones out.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
import zipfile

import keras
import numpy as np

from kzoo.run_directory import LOCK_FILE, RunDirectory
from kzoo.train.config import ConfigError, resume_differences

_NAME = re.compile(r"^step-(\d{9})$")
_META_CHECKSUM = "meta_sha256"


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored (the message says which and why)."""


class RunFolderError(ValueError):
    """A file or folder of a run directory is unusable or unwritable (the message names it and the fix)."""


try:
    import fcntl
except ImportError:  # not on POSIX: runs are not locked
    fcntl = None

_HELD_LOCKS = {}  # real path of a locked run folder -> the open lock file (this process holds it)


@contextlib.contextmanager
def run_lock(directory):
    """Holds an exclusive lock on `<directory>/.lock` while a run writes into the folder.

    A second process training into the same folder would interleave its checkpoints and
    history with this one's and prune them; it gets a `RunFolderError` instead. The lock
    is re-entrant within one process and released by the system when the process dies
    (a killed run never leaves a stale lock).
    """
    directory = directory or "."
    key = os.path.realpath(directory)
    if fcntl is None or key in _HELD_LOCKS:
        yield
        return
    os.makedirs(directory, exist_ok=True)
    file = open(RunDirectory(directory).lock, "a+", encoding="utf-8")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.close()
        raise RunFolderError(f"another process is training in {directory} (it holds {directory}/{LOCK_FILE}); wait for it "
                             "to finish or stop it, or choose another --train.output_dir.") from None
    _HELD_LOCKS[key] = file
    try:
        yield
    finally:
        del _HELD_LOCKS[key]
        fcntl.flock(file, fcntl.LOCK_UN)
        file.close()


def meta_digest(meta):
    """SHA-256 of every field of a checkpoint's meta dict but `meta_sha256` itself (canonical JSON)."""
    body = {key: value for key, value in meta.items() if key != _META_CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(meta, step):
    """Raises `CheckpointError` unless `meta` is a well-formed, unedited meta dict of the checkpoint of `step`."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"meta.json holds a JSON {type(meta).__name__}, not an object")
    if _META_CHECKSUM in meta:
        if meta[_META_CHECKSUM] != meta_digest(meta):
            raise CheckpointError("meta.json does not match its recorded SHA-256 (edited or corrupted)")
    # Checkpoints written before meta_sha256 existed are checked by their structure and folder name only.
    if not _is_int(meta.get("step")) or meta["step"] != step:
        raise CheckpointError(f"meta.json says step {meta.get('step')!r}, its folder step {step}")
    if meta.get("data_position", step) != step:
        raise CheckpointError(f"meta.json says data position {meta.get('data_position')!r}, its folder step {step}")
    if not isinstance(meta.get("sha256"), str):
        raise CheckpointError("meta.json has no SHA-256 of state.npz")
    listing = meta.get("variables")
    if not isinstance(listing, dict) or not all(
            isinstance(entries, list) and all(isinstance(entry, list) and len(entry) == 2 and
                                              isinstance(entry[1], list) for entry in entries)
            for entries in listing.values()):
        raise CheckpointError("meta.json has no valid variable listing")
    if not isinstance(meta.get("config", {}), dict):
        raise CheckpointError("meta.json has an invalid config")


def to_numpy(value):
    """A numpy copy of a variable's value; under JAX also of one spanning other processes' devices."""
    if keras.backend.backend() == "jax":
        from kzoo.train.jax_steps import to_host

        return to_host(value)
    return keras.ops.convert_to_numpy(value)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_directory(path):
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class CheckpointManager:
    """Saves and restores (model, optimizer, step) under `directory`, keeping the newest `keep`.

    Args:
        directory: checkpoint root (created on first save).
        model: a built Keras model.
        optimizer: its built optimizer.
        keep: number of checkpoints kept (older ones are deleted after a save).
        writer: False on the non-chief workers of a multi-worker job: they restore but
            never write.
    """

    def __init__(self, directory, model, optimizer, keep=3, writer=True):
        self.directory = directory
        self.model = model
        self.optimizer = optimizer
        self.keep = keep
        self.writer = writer
        self._verified = {}  # step -> verified good for this model (this manager wrote, restored or hashed it)
        self._anchor = None  # the step this manager last wrote, else the one it restored: never pruned

    # --- listing --------------------------------------------------------------------------------

    def _check_directory(self):
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise RunFolderError(f"{self.directory} is a file, not a checkpoint folder: move it away, or choose "
                                 "another --train.output_dir.")

    def steps(self):
        """Steps of the checkpoint folders on disk (those holding a `meta.json`), oldest first; not yet verified."""
        self._check_directory()
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match and os.path.exists(os.path.join(self.directory, name, "meta.json")):
                found.append(int(match.group(1)))
        return sorted(found)

    def path(self, step):
        return os.path.join(self.directory, f"step-{step:09d}")

    def latest_step(self):
        """The newest checkpoint that verifies as good for this model, or None."""
        return next((step for step in reversed(self.steps()) if self.is_good(step)), None)

    def read_meta(self, step):
        """The verified meta dict of the checkpoint of `step`; raises `CheckpointError` if it is unusable."""
        try:
            with open(os.path.join(self.path(step), "meta.json"), encoding="utf-8") as file:
                meta = json.load(file)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"meta.json is unreadable ({error})") from None
        _check_meta(meta, step)
        return meta

    def newest_meta(self):
        """`(step, meta)` of the newest checkpoint whose meta.json verifies (the state is not read), or None."""
        for step in reversed(self.steps()):
            try:
                return step, self.read_meta(step)
            except CheckpointError:
                continue
        return None

    def _verify(self, step):
        """The verified meta of `step`: checksums, step, and variable shapes against this model (no variable is
        changed); raises `CheckpointError`."""
        meta = self.read_meta(step)
        try:
            digest = _sha256(os.path.join(self.path(step), "state.npz"))
        except OSError as error:
            raise CheckpointError(f"state.npz is unreadable ({error})") from None
        if digest != meta["sha256"]:
            raise CheckpointError("state.npz does not match its recorded SHA-256 (truncated or corrupted)")
        for group, variables in self._variable_groups().items():
            recorded = meta["variables"].get(group, [])
            if len(recorded) != len(variables):
                raise CheckpointError(f"it holds {len(recorded)} {group} variables, the {group} has {len(variables)} "
                                      "(a different model or optimizer configuration)")
            for (_, shape), variable in zip(recorded, variables, strict=True):
                if tuple(shape) != tuple(variable.shape):
                    raise CheckpointError(f"{group} variable {variable.path} has shape {tuple(variable.shape)}, "
                                          f"the checkpoint {tuple(shape)}")
        return meta

    def is_good(self, step):
        """Whether the checkpoint of `step` verifies (cached: each folder is hashed once per manager)."""
        if step not in self._verified:
            try:
                self._verify(step)
                self._verified[step] = True
            except CheckpointError:
                self._verified[step] = False
        return self._verified[step]

    def check_resume(self, mode, config=None):
        """Applies `--train.resume` (`never`, `auto`, `must`) before anything is restored or written.

        Raises `ConfigError` when `mode` is never and the folder holds checkpoints, when it is must and it holds
        none, and when the newest checkpoint was written with a config (`config`: the run's config dict, as
        recorded in every checkpoint) that differs from this one in a key a resumed run must keep
        (`config.resume_differences`).
        """
        steps = self.steps()
        if mode == "never" and steps:
            raise ConfigError(f"--train.resume=never, but {self.directory} already holds checkpoints (newest: step "
                              f"{steps[-1]}); choose a new --train.output_dir for a fresh run, or --train.resume=auto "
                              "to continue them.")
        if mode == "must" and not steps:
            raise ConfigError(f"--train.resume=must, but there is no checkpoint in {self.directory}; check "
                              "--train.output_dir, or use --train.resume=auto to start a fresh run.")
        newest = self.newest_meta()
        if config is None or newest is None or "config" not in newest[1]:
            return
        differences = resume_differences(newest[1]["config"], config)
        if differences:
            listed = "; ".join(f"{key} was {old!r}, now {new!r}" for key, old, new in differences)
            raise ConfigError(f"the checkpoints in {self.directory} (newest: step {newest[0]}) were written with a "
                              f"different configuration ({listed}); rerun with the values they were written with to "
                              "resume them, or choose a new --train.output_dir to start a fresh run.")

    # --- saving ---------------------------------------------------------------------------------

    def _variable_groups(self):
        return {"model": list(self.model.variables), "optimizer": list(self.optimizer.variables)}

    def save(self, step, extra=None):
        """Writes the checkpoint of `step` atomically; returns its path (None on non-writers)."""
        if not self.writer:
            return None
        self._check_directory()
        os.makedirs(self.directory, exist_ok=True)
        final = self.path(step)
        staging = os.path.join(self.directory, f".tmp-step-{step:09d}-{uuid.uuid4().hex[:8]}")
        os.makedirs(staging)
        arrays, listing = {}, {}
        for group, variables in self._variable_groups().items():
            listing[group] = []
            for index, variable in enumerate(variables):
                arrays[f"{group}/{index}"] = to_numpy(variable.value)
                listing[group].append([variable.path, list(variable.shape)])
        state_path = os.path.join(staging, "state.npz")
        with open(state_path, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        meta = {**(extra or {}), "step": int(step), "data_position": int(step), "sha256": _sha256(state_path),
                "variables": listing}
        meta = json.loads(json.dumps(meta))  # the digest covers exactly what is read back
        meta[_META_CHECKSUM] = meta_digest(meta)
        with open(os.path.join(staging, "meta.json"), "w", encoding="utf-8") as file:
            json.dump(meta, file)
            file.flush()
            os.fsync(file.fileno())
        _fsync_directory(staging)
        retired = None
        if os.path.exists(final):
            # Re-saving a step (e.g. the final one): rename the old one aside first, so the step is missing only
            # between two renames (not during a whole rmtree) if the process dies here.
            retired = os.path.join(self.directory, f".retired-step-{step:09d}-{uuid.uuid4().hex[:8]}")
            os.replace(final, retired)
        os.replace(staging, final)
        _fsync_directory(self.directory)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        self._verified[step] = True
        self._anchor = step
        self._prune()
        return final

    def _prune(self):
        """Keeps the newest `keep` checkpoints that verify good for this model, always counting the one this manager
        last wrote (or, before its first write, the one it restored); deletes the other folders older than the oldest
        kept one. A damaged folder newer than that is left alone and does not count: it must never push a good
        checkpoint out."""
        kept = 0
        for step in reversed(self.steps()):
            if step == self._anchor:
                kept += 1
            elif kept >= self.keep:
                shutil.rmtree(self.path(step), ignore_errors=True)
                self._verified.pop(step, None)
            elif self.is_good(step):
                kept += 1
        for name in os.listdir(self.directory):  # staging directories of killed writers
            if name.startswith((".tmp-step-", ".retired-step-")):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    # --- restoring ------------------------------------------------------------------------------

    def restore_latest(self):
        """Restores the newest good checkpoint; returns its meta dict, or None if there is none.

        A checkpoint that fails to load (truncated, either checksum mismatching, a step that
        disagrees with its folder, variables that do not match the model) is skipped with a
        printed warning naming it and why, and the previous one is tried.
        """
        steps = self.steps()
        reasons = []
        for step in reversed(steps):
            try:
                return self.restore(step)
            except CheckpointError as error:
                reasons.append(f"step {step}: {error}")
                warnings.warn(f"skipping checkpoint {self.path(step)}: {error}; trying the previous one",
                              stacklevel=2)
        if steps:
            raise CheckpointError(f"none of the {len(steps)} checkpoints in {self.directory} could be restored "
                                  f"({'; '.join(reasons)}); point --train.output_dir elsewhere to start from "
                                  "scratch, or use the configuration that wrote them.")
        return None

    def restore(self, step):
        """Restores the checkpoint of `step`; raises `CheckpointError` if it is unusable (nothing is assigned then)."""
        self._verified[step] = False  # until it has been restored
        meta = self._verify(step)
        try:
            with np.load(os.path.join(self.path(step), "state.npz"), allow_pickle=False) as state:
                arrays = {key: state[key] for key in state.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"state.npz is unreadable ({error})") from None
        pending = []
        for group, variables in self._variable_groups().items():
            for index, variable in enumerate(variables):
                value = arrays.get(f"{group}/{index}")
                if value is None or tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(f"{group} variable {variable.path} has shape {tuple(variable.shape)}, "
                                          f"the checkpoint {None if value is None else tuple(value.shape)}")
                pending.append((variable, value))
        for variable, value in pending:  # assign only once everything has been checked
            variable.assign(value)
        self._verified[step] = True
        self._anchor = step
        return meta
