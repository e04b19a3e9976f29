"""tools/kill_test.py: a reduced kill test (2 SIGKILLs, one during a checkpoint write) and its checkers.

The training processes run the test session's Keras backend, so CI's TensorFlow half of
the suite kill-tests TensorFlow training and its JAX half JAX training. Each kill costs a
process start (TensorFlow import and tracing, 15-30 s on a busy 2-core machine), so CI
runs two: seed 3 plans a kill while `state.npz` of the step-6 checkpoint is being
written, then, after the resume from step 3, a kill at step 4, below the step the killed
run had logged (the tool must not act on the stale history). The full count (20 kills,
about 10 minutes here) is run by hand: `.venv/bin/python tools/kill_test.py [--backend jax]`.
"""

import json
import os
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import kill_test  # noqa: E402


@pytest.mark.slow
@pytest.mark.backend("tensorflow", "jax", reason="kzoo trains under these two backends only")
def test_two_kills_resume_exactly_and_end_bit_identical(tmp_path):
    lines = []
    backend = keras.backend.backend()
    report = kill_test.run_kill_test(kills=2, seed=3, workdir=str(tmp_path), backend=backend, log=lines.append)
    assert report["ok"], "\n".join(lines)
    assert report["backend"] == backend and lines[0].startswith(f"kill test under KERAS_BACKEND={backend}:")
    assert report["failures"] == []
    rows = report["rows"]
    assert [(row["phase"], row["target"]) for row in rows] == [("mid-write", 6), ("step", 4)]
    assert report["mid_write"] == 1, "the kill aimed at a checkpoint write landed after it:\n" + "\n".join(lines)
    assert report["summary"] == "kills: 2, mid-write: 1, resumed correctly: 2/2, final weights identical: yes"
    assert lines[-1] == report["summary"]
    every = report["checkpoint_every"]
    for row in rows:
        assert row["next_resumed_from"] == row["newest_complete"] <= row["killed_at"]
        if row["mid_write"]:  # the half-written checkpoint was left behind and never used
            assert row["staging_left"] and row["newest_complete"] == row["target"] - every
    assert report["final_resumed_from"] == rows[-1]["newest_complete"]


# --- the checkers can fail ----------------------------------------------------------------------


REFERENCE = [(1, 4.5, 1.0), (2, 4.25, 0.9), (3, 4.0, 0.8)]


def test_history_check_catches_repeated_skipped_and_different_steps():
    assert kill_test._check_history(REFERENCE, REFERENCE, 3, "run") == []
    assert kill_test._check_history(REFERENCE[:2], REFERENCE, 2, "run") == []
    repeated = [REFERENCE[0], REFERENCE[1], REFERENCE[1], REFERENCE[2]]
    assert "repeated [2]" in kill_test._check_history(repeated, REFERENCE, 3, "run")[0]
    assert "missing [2]" in kill_test._check_history([REFERENCE[0], REFERENCE[2]], REFERENCE, 3, "run")[0]
    different = [REFERENCE[0], (2, 4.25 + 1e-7, 0.9), REFERENCE[2]]
    assert "at steps [2]" in kill_test._check_history(different, REFERENCE, 3, "run")[0]


def test_checkpoint_scan_tells_complete_from_damaged_and_ignores_staging(tmp_path):
    import hashlib

    root = tmp_path / "checkpoints"
    for step, payload, edit in ((3, b"good", {}), (6, b"damaged", {}), (9, b"good", {"step": 10}),
                                (12, b"good", {"meta_sha256": "0" * 64})):
        folder = root / f"step-{step:09d}"
        folder.mkdir(parents=True)
        (folder / "state.npz").write_bytes(b"good")
        meta = {"step": step, "sha256": kill_test._sha256(folder / "state.npz")}
        canonical = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
        meta["meta_sha256"] = hashlib.sha256(canonical).hexdigest()
        (folder / "meta.json").write_text(json.dumps({**meta, **edit}))
        (folder / "state.npz").write_bytes(payload)
    (root / "step-000000015").mkdir()  # no meta.json: not a checkpoint
    (root / ".tmp-step-000000012-abcd1234").mkdir()
    assert kill_test._checkpoints(str(tmp_path)) == ([3], [6, 9, 12])
    assert kill_test._staging_folders(str(tmp_path)) == {".tmp-step-000000012-abcd1234"}


def test_plan_mixes_phases_and_keeps_targets_within_two_intervals():
    import random

    rng = random.Random(0)
    plan = kill_test._plan_phases(20, 0.5, rng)
    assert sorted(phase for phase, _ in plan).count("mid-write") == 10
    assert {moment for phase, moment in plan if phase == "mid-write"} == set(kill_test.WRITE_MOMENTS)
    for _ in range(50):
        step = kill_test._plan_target("step", 6, 3, 100, rng)
        write = kill_test._plan_target("mid-write", 6, 3, 100, rng)
        assert step in (7, 8, 10, 11) and write in (9, 12)
    assert kill_test._plan_target("mid-write", 9, 3, 10, rng) == 10  # the final save counts as a write
    with pytest.raises(kill_test.KillTestError, match="more --steps"):
        kill_test._plan_target("step", 9, 3, 10, rng)
