"""Atomic, verifiable training checkpoints with keep-N retention and fallback.

A checkpoint is a directory `<root>/step-<step:09d>/` holding:

- `state.npz`: every model variable (weights, and the random-seed states of dropout
  layers, so a resumed run draws the same masks) and every optimizer variable (step
  counter, moments, gradient accumulators, loss scale), keyed `model/<i>` and
  `optimizer/<i>` in the order Keras lists them;
- `meta.json`: the training step, the data position (global batches consumed), the
  variable paths and shapes, and the SHA-256 of `state.npz`.

Writing goes to a temporary sibling directory that is renamed into place only when
complete and flushed, so a kill at any instant leaves either the previous set of
checkpoints or the new one, never a half-written one that looks whole. Loading
verifies the checksum and shapes; a damaged newest checkpoint is skipped with a
warning in favour of the previous good one.
"""

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings

import keras
import numpy as np

_NAME = re.compile(r"^step-(\d{9})$")


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored (the message says which and why)."""


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

    # --- listing --------------------------------------------------------------------------------

    def steps(self):
        """Steps of the complete checkpoints on disk, oldest first."""
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
        steps = self.steps()
        return steps[-1] if steps else None

    # --- saving ---------------------------------------------------------------------------------

    def _variable_groups(self):
        return {"model": list(self.model.variables), "optimizer": list(self.optimizer.variables)}

    def save(self, step, extra=None):
        """Writes the checkpoint of `step` atomically; returns its path (None on non-writers)."""
        if not self.writer:
            return None
        os.makedirs(self.directory, exist_ok=True)
        final = self.path(step)
        staging = os.path.join(self.directory, f".tmp-step-{step:09d}-{uuid.uuid4().hex[:8]}")
        os.makedirs(staging)
        arrays, listing = {}, {}
        for group, variables in self._variable_groups().items():
            listing[group] = []
            for index, variable in enumerate(variables):
                arrays[f"{group}/{index}"] = keras.ops.convert_to_numpy(variable.value)
                listing[group].append([variable.path, list(variable.shape)])
        state_path = os.path.join(staging, "state.npz")
        with open(state_path, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        meta = {"step": int(step), "data_position": int(step), "sha256": _sha256(state_path),
                "variables": listing, **(extra or {})}
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
        self._prune()
        return final

    def _prune(self):
        steps = self.steps()
        for step in steps[: max(0, len(steps) - self.keep)]:
            shutil.rmtree(self.path(step), ignore_errors=True)
        for name in os.listdir(self.directory):  # staging directories of killed writers
            if name.startswith((".tmp-step-", ".retired-step-")):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    # --- restoring ------------------------------------------------------------------------------

    def restore_latest(self):
        """Restores the newest good checkpoint; returns its meta dict, or None if there is none.

        A checkpoint that fails to load (truncated, checksum mismatch, variables that do not
        match the model) is skipped with a warning and the previous one is tried.
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
        """Restores the checkpoint of `step`; raises `CheckpointError` if it is unusable."""
        folder = self.path(step)
        try:
            with open(os.path.join(folder, "meta.json"), encoding="utf-8") as file:
                meta = json.load(file)
            state_path = os.path.join(folder, "state.npz")
            if _sha256(state_path) != meta["sha256"]:
                raise CheckpointError("state.npz does not match its recorded SHA-256 (truncated or corrupted)")
            with np.load(state_path, allow_pickle=False) as state:
                arrays = {key: state[key] for key in state.files}
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(f"unreadable ({error})") from None
        pending = []
        for group, variables in self._variable_groups().items():
            recorded = meta["variables"].get(group, [])
            if len(recorded) != len(variables):
                raise CheckpointError(f"it holds {len(recorded)} {group} variables, the {group} has {len(variables)} "
                                      "(a different model or optimizer configuration)")
            for index, variable in enumerate(variables):
                value = arrays.get(f"{group}/{index}")
                if value is None or tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(f"{group} variable {variable.path} has shape {tuple(variable.shape)}, "
                                          f"the checkpoint {None if value is None else tuple(value.shape)}")
                pending.append((variable, value))
        for variable, value in pending:  # assign only once everything has been checked
            variable.assign(value)
        return meta
