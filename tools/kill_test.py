"""Kill test: SIGKILL a tiny training run N times, resume it each time, and prove the result is exact.

    .venv/bin/python tools/kill_test.py                          # 20 kills (the full count)
    .venv/bin/python tools/kill_test.py --kills 2 --seed 3       # the reduced count CI runs (test_kill_test.py)
    .venv/bin/python tools/kill_test.py --kills 20 --output kill_test.json --workdir /tmp/kill
    .venv/bin/python tools/kill_test.py --backend jax            # the same under JAX (or KERAS_BACKEND=jax)

Backend (`--backend tensorflow|jax`): the Keras backend of every training process. The
default is the KERAS_BACKEND of the environment, as for any kzoo command (so
`KERAS_BACKEND=jax tools/kill_test.py` tests JAX training), and TensorFlow, Keras' own
default, when it is unset.

What it does. A reference run of `tests/train/train_tiny.py` trains uninterrupted (in the
background, concurrently with the rest). A second run of the same recipe in its own folder
is SIGKILLed `--kills` times and restarted after every kill until it finishes. Each kill is
one of two kinds, shuffled in a random mix (`--mid-write-fraction` of them are writes):

  step       at a random step between checkpoints: the tool watches `history.jsonl`
             (one record per step) and kills once the target step is logged;
  mid-write  during a checkpoint write: the tool polls the checkpoint folder for the
             temporary `.tmp-step-<step>-<id>` folder that `kzoo/train/checkpoint.py`
             writes into before renaming it into place, and kills as soon as it appears
             ("begun"), or as soon as `state.npz` or `meta.json` exists in it (the
             write moment, taken in turn). The kill really landed mid-write when that
             temporary folder is still there after the process died (the table's
             "mid-write?" column, with the files the folder held). Polling every 1 ms
             catches the 30-50 ms writes here; no fault-injection hook was needed.

Checks (exit status 1 if any fails; 2 if the test could not run, e.g. a process crashed):
  - after every kill, every `step-*` checkpoint on disk is complete (its `state.npz`
    matches the SHA-256 in its `meta.json`): a half-written checkpoint never looks whole;
  - every restart resumes from the newest complete checkpoint on disk at the kill (the
    restarted process records what `CheckpointManager.restore_latest` returned), and
    restore never had to skip a damaged checkpoint;
  - the history of every killed run holds steps 1..k exactly once each, with training
    losses and gradient norms equal, bit for bit, to the reference run's;
  - the finished run's history holds steps 1..S exactly once each (the truncation on
    resume dropped the steps a killed run logged after its last checkpoint), equal to the
    reference bit for bit, and its result says it resumed from the last checkpoint and ran
    exactly the remaining steps: no step repeated or skipped in the final lineage;
  - the final weights are bit-identical (`np.array_equal`) to the reference run's.

Prints the backend, a table (kill #, phase, target, killed at step, mid-write?, newest complete
checkpoint, resumed from) and the summary line
`kills: N, mid-write: M, resumed correctly: N/N, final weights identical: yes/no`;
`--output` writes the whole report as JSON.

Sizes: `--checkpoint-every 3` and `--steps` = checkpoint_every * (2 * kills + 2) by default.
A kill lands at most two checkpoint intervals after the resumed one, so every planned kill
fits before the run ends. One cycle is dominated by the process start (TensorFlow import, which
the JAX backend needs too for tf.data, and tracing): 15-30 s on a busy 2-core machine, about
10 minutes for the full 20 kills.

Internal: `kill_test.py child OUTPUT_DIR [train_tiny args]` is the entry of each training
process (train_tiny, plus a record of the checkpoint it resumed from in
`OUTPUT_DIR/resumes.jsonl`); it is not meant to be run by hand.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESUMES = "resumes.jsonl"
STAGING_PREFIX = ".tmp-step-"  # kzoo/train/checkpoint.py: CheckpointManager.save writes here first
CHECKPOINT_NAME = re.compile(r"^step-(\d{9})$")
PROCESS_TIMEOUT_S = 600
POLL_S = 0.001
WRITE_MOMENTS = ("begun", "state.npz", "meta.json")  # points of a checkpoint write to kill at (_write_reached)
BACKENDS = ("tensorflow", "jax")  # the Keras backends kzoo trains under (kzoo.train.loop.TRAINING_BACKENDS)


class KillTestError(RuntimeError):
    """The test could not be carried out (a process failed, hung, or finished before it could be killed)."""


# --- the training process ---------------------------------------------------------------------


def _child(argv):
    """Runs train_tiny on `argv`, appending which checkpoint it resumed from to `OUTPUT_DIR/resumes.jsonl`.

    Why a wrapper: a killed process writes no result, so the only way to learn where each
    restart resumed is to record what `CheckpointManager.restore_latest` returned (and any
    "skipping checkpoint" warning it gave) from inside the process. The library is not changed.
    """
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from kzoo.train import checkpoint  # TF_CPP_MIN_LOG_LEVEL is set by _start, before TensorFlow loads
    from tests.train import train_tiny

    output_dir = argv[0]
    restore_latest = checkpoint.CheckpointManager.restore_latest

    def recording_restore_latest(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta = restore_latest(self)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        record = {"pid": os.getpid(), "resumed_from": int(meta["step"]) if meta else 0,
                  "warnings": [str(warning.message) for warning in caught]}
        with open(os.path.join(output_dir, RESUMES), "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        return meta

    checkpoint.CheckpointManager.restore_latest = recording_restore_latest
    sys.argv = ["train_tiny", *argv]
    train_tiny.main()


# --- reading a run's folder -------------------------------------------------------------------


def _read_jsonl(path):
    """Complete lines of a JSON-lines file (a line still being written is left out); [] if it does not exist."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def _train_history(run_dir):
    """[(step, loss, gradient_norm)] of the training records in `history.jsonl`, in file order."""
    records = _read_jsonl(os.path.join(run_dir, "history.jsonl"))
    return [(r["step"], r["train"]["loss"], r["train"]["gradient_norm"]) for r in records if "train" in r]


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _checkpoints(run_dir):
    """(complete steps, damaged steps) among the `step-*` checkpoints, checked here independently of the library.

    A checkpoint counts when its `meta.json` exists (what the library lists); it is complete when its
    `state.npz` matches the recorded SHA-256, its `meta.json` its own (`meta_sha256`: canonical JSON of its
    other fields) and its step the folder's, and damaged otherwise.
    """
    root = os.path.join(run_dir, "checkpoints")
    complete, damaged = [], []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        match = CHECKPOINT_NAME.match(name)
        meta_path = os.path.join(root, name, "meta.json")
        if not match or not os.path.exists(meta_path):
            continue
        try:
            with open(meta_path, encoding="utf-8") as file:
                meta = json.load(file)
            body = {key: value for key, value in meta.items() if key != "meta_sha256"}
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
            good = (_sha256(os.path.join(root, name, "state.npz")) == meta["sha256"]
                    and hashlib.sha256(canonical).hexdigest() == meta["meta_sha256"]
                    and meta["step"] == int(match.group(1)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            good = False
        (complete if good else damaged).append(int(match.group(1)))
    return complete, damaged


def _staging_folders(run_dir):
    """Names of the temporary checkpoint folders (in-progress or abandoned writes) in the run's checkpoint root."""
    root = os.path.join(run_dir, "checkpoints")
    try:
        return {name for name in os.listdir(root) if name.startswith(STAGING_PREFIX)}
    except FileNotFoundError:
        return set()


def _weights(run_dir):
    import numpy as np

    with np.load(os.path.join(run_dir, "weights-0.npz")) as state:
        return {key: state[key] for key in state.files}


# --- driving processes ------------------------------------------------------------------------


def default_backend():
    """The backend the training processes run when none is given: KERAS_BACKEND, else TensorFlow (Keras' default)."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def _start(run_dir, train_args, log_path, backend):
    """Starts one training process (the `child` entry, under Keras backend `backend`) writing into `run_dir`; its
    output goes to `log_path`."""
    os.makedirs(run_dir, exist_ok=True)
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "child", run_dir, *train_args],
                                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)


def _tail(log_path, characters=3000):
    with open(log_path, encoding="utf-8", errors="replace") as file:
        return file.read()[-characters:]


def _wait(process, log_path, what):
    """Waits for a process that should finish; raises `KillTestError` with its output if it fails or hangs."""
    try:
        code = process.wait(timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise KillTestError(f"{what} did not finish in {PROCESS_TIMEOUT_S} s; its output:\n{_tail(log_path)}") from None
    if code != 0:
        raise KillTestError(f"{what} exited with status {code}; its output:\n{_tail(log_path)}")


def _poll_until(process, condition, log_path, what):
    """Polls `condition()` every POLL_S while the process runs; True once it holds, False if the process exited."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(POLL_S)
    process.kill()
    process.wait()
    raise KillTestError(f"{what}: nothing happened in {PROCESS_TIMEOUT_S} s; its output:\n{_tail(log_path)}")


def _resume_record(run_dir, pid):
    """The resume record written by process `pid`, or None while it has not restored yet."""
    return next((r for r in _read_jsonl(os.path.join(run_dir, RESUMES)) if r["pid"] == pid), None)


def _history_inode(run_dir):
    try:
        return os.stat(os.path.join(run_dir, "history.jsonl")).st_ino
    except FileNotFoundError:
        return None


def _step_reached(run_dir, pid, step, stale_max, stale_inode):
    """A condition: this process (pid) has logged `step`.

    Until the restarted process appends its first record, `history.jsonl` still holds the
    killed run's records (up to `stale_max`); they must not trigger the kill. Just before
    that first append the library rewrites the file without the records past its checkpoint
    (a new file renamed into place), so the history counts as this process's once its inode
    differs from the stale file's (`stale_inode`) or once it goes beyond `stale_max`.
    """
    state = {"fresh": False}

    def condition():
        record = _resume_record(run_dir, pid)
        if record is None:
            return False
        inode = _history_inode(run_dir)
        history = _train_history(run_dir)
        last = history[-1][0] if history else 0
        if (inode is not None and inode != stale_inode) or last > stale_max:
            state["fresh"] = True
        return state["fresh"] and last >= step

    return condition


def _write_reached(run_dir, step, moment, before):
    """A condition: the write of the checkpoint of `step` has reached `moment`.

    Moments: "begun" (its new temporary folder exists), "state.npz" or "meta.json" (that file
    exists in it: the second one means only the flush and the rename are left). When the
    folder has been renamed into place before the file was seen, the condition holds at once
    too, so the kill still lands (just after the write; the row then says mid-write "no").
    """
    prefix = f"{STAGING_PREFIX}{step:09d}-"
    root = os.path.join(run_dir, "checkpoints")
    seen = set()

    def condition():
        folders = [name for name in _staging_folders(run_dir) - before if name.startswith(prefix)]
        seen.update(folders)
        if folders and (moment == "begun" or any(os.path.exists(os.path.join(root, f, moment)) for f in folders)):
            return True
        return bool(seen) and not folders  # renamed (or abandoned) before the moment was seen

    return condition


# --- planning kills ---------------------------------------------------------------------------


def _plan_phases(kills, mid_write_fraction, rng):
    """A shuffled plan of `kills` (phase, moment) pairs: round(kills * fraction) "mid-write", the rest "step".

    The mid-write kills go through the write moments in turn (from a shuffled start), so that
    even a short run aims at different points of a checkpoint write; "step" kills have no moment.
    """
    writes = round(kills * mid_write_fraction)
    moments = list(WRITE_MOMENTS)
    rng.shuffle(moments)
    plan = [("mid-write", moments[i % len(moments)]) for i in range(writes)] + [("step", None)] * (kills - writes)
    rng.shuffle(plan)
    return plan


def _plan_target(phase, resumed_from, every, steps, rng):
    """The step to kill at: within two checkpoint intervals after `resumed_from`, capped at the run's end.

    "step": a step that is not a checkpoint step; "mid-write": a checkpoint step (its write is caught).
    """
    horizon = range(resumed_from + 1, min(resumed_from + 2 * every, steps) + 1)
    if phase == "mid-write":
        choices = [s for s in horizon if s % every == 0 or s == steps]
    else:
        choices = [s for s in horizon if s % every != 0 and s < steps]
    if not choices:
        raise KillTestError(f"no step left to kill at after step {resumed_from} of {steps}; use more --steps")
    return rng.choice(choices)


# --- the test ---------------------------------------------------------------------------------


def _kill_once(run_dir, train_args, backend, phase, target, moment, log_path):
    """Starts a (resuming) run, SIGKILLs it at `target` in the given phase; returns what was found afterwards.

    `moment` is the point of the checkpoint write a "mid-write" kill waits for (see `_write_reached`).
    """
    before = _staging_folders(run_dir)
    stale, stale_inode = _train_history(run_dir), _history_inode(run_dir)
    process = _start(run_dir, train_args, log_path, backend)
    if phase == "mid-write":
        condition = _write_reached(run_dir, target, moment, before)
    else:
        condition = _step_reached(run_dir, process.pid, target, stale[-1][0] if stale else 0, stale_inode)
    if not _poll_until(process, condition, log_path, f"the run to be killed at step {target}"):
        raise KillTestError(f"the run exited (status {process.returncode}) before it could be killed at step "
                            f"{target} ({phase}); use more --steps. Its output:\n{_tail(log_path)}")
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = sorted(_staging_folders(run_dir) - before)
    complete, damaged = _checkpoints(run_dir)
    history = _train_history(run_dir)
    resume = _resume_record(run_dir, process.pid)
    return {
        "phase": phase, "target": target, "moment": moment if phase == "mid-write" else None, "pid": process.pid,
        "killed_at": history[-1][0] if history else 0,
        "mid_write": bool(left),
        "staging_left": {name: sorted(os.listdir(os.path.join(run_dir, "checkpoints", name))) for name in left},
        "resumed_from": resume["resumed_from"] if resume else None,
        "resume_warnings": resume["warnings"] if resume else [],
        "checkpoints_after": complete, "damaged_after": damaged,
        "newest_complete": complete[-1] if complete else 0,
        "history": history,
    }


def _check_history(history, reference, upto, what):
    """Failures if `history` is not exactly steps 1..upto, each once, equal to the reference's bit for bit."""
    steps = [record[0] for record in history]
    if steps != list(range(1, upto + 1)):
        repeated = sorted({s for s in steps if steps.count(s) > 1})
        missing = sorted(set(range(1, upto + 1)) - set(steps))
        return [f"{what}: history steps are not 1..{upto} once each (repeated {repeated}, missing {missing}, "
                f"extra {sorted(set(steps) - set(range(1, upto + 1)))})"]
    expected = {record[0]: record[1:] for record in reference}
    differing = [step for step, *values in history if tuple(values) != tuple(expected.get(step, ()))]
    if differing:
        return [f"{what}: loss/gradient norm differ from the uninterrupted run at steps {differing[:10]}"]
    return []


def _check_kills(rows, reference_history, final_resume):
    """Per-kill failures: damaged checkpoints, wrong resume step, skipped/repeated/different steps."""
    failures = []
    for index, row in enumerate(rows):
        what = f"kill {index + 1}"
        expected_start = rows[index - 1]["newest_complete"] if index else 0
        if row["resumed_from"] != expected_start:
            failures.append(f"{what}: the run resumed from step {row['resumed_from']}, the newest complete "
                            f"checkpoint was step {expected_start}")
        if row["resume_warnings"]:
            failures.append(f"{what}: restore skipped a damaged checkpoint: {row['resume_warnings']}")
        if row["damaged_after"]:
            failures.append(f"{what}: checkpoints {row['damaged_after']} look whole but fail their SHA-256")
        if row["newest_complete"] > row["killed_at"]:
            failures.append(f"{what}: checkpoint {row['newest_complete']} is newer than the last logged step "
                            f"{row['killed_at']}")
        failures += _check_history(row["history"], reference_history, row["killed_at"], what)
        row["next_resumed_from"] = rows[index + 1]["resumed_from"] if index + 1 < len(rows) else final_resume
        row["resumed_correctly"] = row["next_resumed_from"] == row["newest_complete"] and not (
            row["resume_warnings"] or row["damaged_after"])
    return failures


def run_kill_test(kills=20, seed=0, steps=None, checkpoint_every=3, mid_write_fraction=0.5, workdir=None,
                  backend=None, log=print):
    """Runs the whole kill test; returns the report dict (report["ok"] says whether every check passed).

    `backend` is the Keras backend of the training processes ("tensorflow" or "jax"; None: `default_backend()`).
    `workdir` holds the reference and killed runs and their process logs (a temporary folder,
    removed when the test passes, if None). `log` receives progress lines and the table.
    """
    if kills < 1:
        raise ValueError(f"kills must be at least 1, got {kills}")
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: kzoo trains under {' and '.join(BACKENDS)}")
    steps = steps or checkpoint_every * (2 * kills + 2)
    rng = random.Random(seed)
    own_workdir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="kzoo-kill-test-")
    reference_dir, killed_dir, logs = (os.path.join(workdir, name) for name in ("reference", "killed", "logs"))
    for folder in (reference_dir, killed_dir):
        if os.path.exists(folder):
            raise KillTestError(f"{folder} already exists; give an empty --workdir")
    os.makedirs(logs, exist_ok=True)
    train_args = [f"--steps={steps}", f"--checkpoint-every={checkpoint_every}"]
    started = time.perf_counter()
    log(f"kill test under KERAS_BACKEND={backend}: {kills} kills, {steps} steps, a checkpoint every {checkpoint_every}")
    reference_log = os.path.join(logs, "reference.log")
    reference = _start(reference_dir, train_args, reference_log, backend)  # runs alongside the kills
    rows = []
    try:
        for index, (phase, moment) in enumerate(_plan_phases(kills, mid_write_fraction, rng)):
            resumed = rows[-1]["newest_complete"] if rows else 0
            target = _plan_target(phase, resumed, checkpoint_every, steps, rng)
            row = _kill_once(killed_dir, train_args, backend, phase, target, moment,
                             os.path.join(logs, f"run-{index:02d}.log"))
            rows.append(row)
            where = f"{phase} ({moment})" if moment else phase
            log(f"kill {index + 1}/{kills}: {where} at step {target} -> killed at step {row['killed_at']}, "
                f"mid-write {'yes' if row['mid_write'] else 'no'}, newest complete checkpoint {row['newest_complete']}")
        final_log = os.path.join(logs, f"run-{kills:02d}.log")
        final = _start(killed_dir, train_args, final_log, backend)
        _wait(final, final_log, "the final resumed run")
        _wait(reference, reference_log, "the reference run")
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    report = _assemble(rows, killed_dir, reference_dir, final.pid, steps, kills, seed, checkpoint_every)
    report.update(backend=backend, workdir=workdir, seconds=round(time.perf_counter() - started, 1))
    for line in _table(report):
        log(line)
    if report["ok"] and own_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _assemble(rows, killed_dir, reference_dir, final_pid, steps, kills, seed, every):
    """Runs the end checks and builds the report dict."""
    import numpy as np

    reference_history = _train_history(reference_dir)
    failures = _check_history(reference_history, reference_history, steps, "reference run")
    final_record = _resume_record(killed_dir, final_pid)
    final_resume = final_record["resumed_from"] if final_record else None
    failures += _check_kills(rows, reference_history, final_resume)
    failures += _check_history(_train_history(killed_dir), reference_history, steps, "final lineage")
    with open(os.path.join(killed_dir, "result-0.json"), encoding="utf-8") as file:
        result = json.load(file)
    last = rows[-1]["newest_complete"]
    if result["steps"] != steps or result["steps_this_run"] != steps - last or (result["resumed_from"] or 0) != last:
        failures.append(f"final run: resumed from {result['resumed_from']} and ran {result['steps_this_run']} steps "
                        f"to {result['steps']}; expected to resume from {last} and run {steps - last} to {steps}")
    reference_weights, final_weights = _weights(reference_dir), _weights(killed_dir)
    identical = reference_weights.keys() == final_weights.keys() and all(
        np.array_equal(reference_weights[key], final_weights[key]) for key in reference_weights)
    if not identical:
        failures.append("final weights differ from the uninterrupted run's")
    for row in rows:
        row.pop("history")  # kept out of the report: it is checked above
    correct = sum(row["resumed_correctly"] for row in rows)
    mid_write = sum(row["mid_write"] for row in rows)
    summary = (f"kills: {kills}, mid-write: {mid_write}, resumed correctly: {correct}/{kills}, "
               f"final weights identical: {'yes' if identical else 'no'}")
    return {"ok": not failures, "summary": summary, "failures": failures, "kills": kills, "mid_write": mid_write,
            "resumed_correctly": correct, "weights_identical": identical, "seed": seed, "steps": steps,
            "checkpoint_every": every, "final_resumed_from": final_resume, "rows": rows}


def _table(report):
    """The report as printable lines: one row per kill, then failures and the summary line."""
    rows = [("kill", "phase", "target step", "killed at step", "mid-write? (files left)", "newest complete",
             "resumed from")]
    for index, row in enumerate(report["rows"]):
        staged = ",".join(sorted({f for files in row["staging_left"].values() for f in files})) or "none"
        rows.append((index + 1, f"{row['phase']} ({row['moment']})" if row["moment"] else row["phase"], row["target"],
                     row["killed_at"], f"yes ({staged})" if row["mid_write"] else "no", row["newest_complete"],
                     row["next_resumed_from"]))
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(f"{cell!s:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"FAILED: {failure}" for failure in report["failures"]]
    lines.append(report["summary"])
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        _child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="number of SIGKILLs (default 20)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="Keras backend of the training runs (default: KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill plan (phases and steps)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 3 * (2 * kills + 2))")
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--mid-write-fraction", type=float, default=0.5,
                        help="share of the kills aimed at a checkpoint write (default 0.5)")
    parser.add_argument("--workdir", default=None, help="folder for the runs and logs (default: a temporary one, "
                                                        "removed if the test passes)")
    parser.add_argument("--output", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.backend is None and default_backend() not in BACKENDS:
        parser.error(f"KERAS_BACKEND is {default_backend()!r}; kzoo trains under {' and '.join(BACKENDS)}: "
                     "pass --backend")
    try:
        report = run_kill_test(args.kills, args.seed, args.steps, args.checkpoint_every, args.mid_write_fraction,
                               args.workdir, args.backend)
    except KillTestError as error:
        print(f"kill test could not run: {error}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
    if not report["ok"]:
        print(f"kill test FAILED; the runs and their logs are in {report['workdir']}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
