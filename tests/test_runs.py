"""Run store: layout, ids, listing, rename/delete, atomic files, crash recognition."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.runs import store as runs
from core.errors import RunError
from core.runs.store import HOST, Run, RunStore, process_start_time

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {"config.json", "status.json", "meta.json", "history.csv", "metrics.json",
             "predictions.csv", "progress.json", ".status.lock", ".history.lock"}


@pytest.fixture
def store() -> RunStore:
    return RunStore()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".lock")}


def _mark_running(run: Run, **fields) -> None:
    me = os.getpid()
    run.set_status("running", **{"pid": me, "pid_start": process_start_time(me), "host": HOST, **fields})


def test_create_writes_a_complete_queued_run(store, tl_home):
    run = store.create({"strategy": "Feature Extraction", "seed": 3, "lr": np.float32(0.5)})
    assert store.root == tl_home / "users" / "local" / "runs"
    assert runs._ID_RE.match(run.id) and "-feature-extraction-" in run.id
    assert sorted(p.name for p in run.dir.iterdir()) == ["config.json", "meta.json", "status.json"]
    assert json.loads((run.dir / "config.json").read_text()) == {"strategy": "Feature Extraction", "seed": 3, "lr": 0.5}
    status = run.status()
    assert status["state"] == "queued" and status["created"] <= time.time() and status["pid"] is None
    assert store.get(run.id) == run and store.get(run.id).config["seed"] == 3
    assert [p.name for p in store.root.iterdir()] == [run.id]  # no staging folder left


def test_unserialisable_config_is_refused(store):
    with pytest.raises(RunError, match="cannot be saved"):
        store.create({"model": object()})
    assert list(store.root.iterdir()) == []


def test_create_interrupted_leaves_no_half_run(store, monkeypatch):
    def broken_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError):
        store.create({"strategy": "x"})
    assert list(store.root.iterdir()) == [] and store.list() == []


def test_ids_unique_and_list_newest_first(store):
    created = [store.create({"strategy": "probe", "i": i}) for i in range(6)]
    assert len({r.id for r in created}) == 6
    assert store.list() == created[::-1]


def test_get_rejects_unknown_and_path_like_ids(store):
    store.create({})
    with pytest.raises(RunError, match="not found"):
        store.get("20260101-000000-run-ffff")
    for bad in ["../runs", "", ".new-x", "a/b"]:
        with pytest.raises(RunError):
            store.get(bad)


def test_list_filters_by_effective_state_and_config(store):
    a = store.create({"strategy": "probe", "backbone": "lite0"})
    b = store.create({"strategy": "finetune", "backbone": "lite0"})
    c = store.create({"strategy": "probe", "backbone": "lite1"})
    b.set_status("done")
    c.set_status("running", pid=_dead_pid(), host=HOST)  # a crashed worker
    assert store.list(state="queued") == [a]
    assert store.list(state="running") == []
    assert store.list(state="failed") == [c]
    assert store.list(state=("done", "failed")) == [c, b]
    assert store.list(strategy="probe") == [c, a]
    assert store.list(strategy="probe", backbone="lite0") == [a]
    assert store.list(state="done", strategy="probe") == []


def test_rename(store):
    run = store.create({"strategy": "probe"})
    assert run.name == run.id
    store.rename(run.id, "  baseline VGG  ")
    assert store.get(run.id).name == "baseline VGG"
    store.rename(run.id, "")
    assert run.name == run.id
    with pytest.raises(RunError, match="120"):
        store.rename(run.id, "x" * 121)


def test_delete_refused_while_running(store):
    queued, done, running = (store.create({"i": i}) for i in range(3))
    done.set_status("done")
    _mark_running(running)
    with pytest.raises(RunError, match="still running"):
        store.delete(running.id)
    store.delete(queued.id)
    store.delete(done.id)
    assert store.list() == [running]
    assert [p.name for p in store.root.iterdir()] == [running.id]
    with pytest.raises(RunError, match="not found"):
        store.get(done.id)
    with pytest.raises(RunError):
        queued.set_status("running")  # a stale handle cannot resurrect it


def test_delete_allowed_when_worker_died(store):
    run = store.create({})
    run.set_status("running", pid=_dead_pid(), host=HOST)
    store.delete(run.id)
    assert store.list() == []


def test_history_keeps_column_order_and_accepts_new_keys(store):
    run = store.create({})
    assert run.history().empty
    run.append_history({"epoch": 0, "phase": "head", "loss": 0.9, "accuracy": np.float32(0.5)})
    run.append_history({"epoch": 1, "phase": "head", "loss": 0.7, "accuracy": 0.6, "val_loss": 0.8})
    run.append_history({"accuracy": 0.7, "epoch": 2, "loss": 0.5, "phase": "fine", "lr": 1e-5})
    hist = run.history()
    assert list(hist.columns) == ["epoch", "phase", "loss", "accuracy", "val_loss", "lr"]
    assert hist["epoch"].tolist() == [0, 1, 2]
    assert hist["accuracy"].tolist() == pytest.approx([0.5, 0.6, 0.7])
    assert hist["phase"].tolist() == ["head", "head", "fine"]
    assert pd.isna(hist.loc[0, "val_loss"]) and hist.loc[1, "val_loss"] == 0.8
    assert hist.loc[2, "lr"] == 1e-5


def test_metrics_predictions_progress_roundtrip(store):
    run = store.create({})
    assert run.metrics() is None and run.predictions() is None and run.progress() == {}
    run.write_metrics({"val_accuracy": np.float64(0.91), "confusion": [[np.int64(5), 1], [0, 6]]})
    assert run.metrics() == {"val_accuracy": 0.91, "confusion": [[5, 1], [0, 6]]}
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "label": ["cat", "dog"], "p_dog": [0.1, 0.8]})
    run.write_predictions(frame)
    pd.testing.assert_frame_equal(run.predictions(), frame)
    assert run.write_progress({"batch": 1, "batches": 10})
    assert not run.write_progress({"batch": 2, "batches": 10})  # throttled
    assert run.progress()["batch"] == 1
    assert run.write_progress({"batch": 3, "batches": 10}, force=True)
    assert run.progress()["batch"] == 3 and run.progress()["updated"] <= time.time()


def test_set_status_stamps_and_transition_is_conditional(store):
    run = store.create({})
    assert not run.transition("running", "done")
    assert run.status()["state"] == "queued"
    assert run.transition(("queued", "running"), "running", pid=1)
    started = run.status()["started"]
    run.heartbeat()
    assert run.status()["heartbeat"] >= started
    run.set_status("failed", reason="x", error="Traceback...")
    status = run.status()
    assert status["finished"] >= started and status["reason"] == "x"
    with pytest.raises(ValueError):
        run.set_status("exploded")


def test_cancel_flag(store):
    run = store.create({})
    assert not run.cancel_requested()
    run.raise_if_cancelled()
    run.request_cancel()
    assert run.cancel_requested()
    with pytest.raises(runs.RunCancelled):
        run.raise_if_cancelled()


def test_crashed_worker_is_recognised(store):
    run = store.create({})
    me = os.getpid()
    _mark_running(run)
    assert run.effective_state() == "running" and not run.is_finished

    dead = _dead_pid()
    run.set_status("running", pid=dead, pid_start=None)
    status = run.effective_status()
    assert status["state"] == "failed" and f"worker process died (pid {dead})" in status["reason"]
    assert run.status()["state"] == "running"  # the file is only fixed by jobs.pump

    run.set_status("running", pid=me, pid_start=process_start_time(me) - 1)  # a recycled pid
    assert run.effective_state() == "failed"

    now = time.time()  # another host: only the heartbeat can tell
    run.set_status("running", pid=me, host="elsewhere", heartbeat=now)
    assert run.effective_state() == "running"
    run.set_status("running", pid=me, host="elsewhere", heartbeat=now - runs.STALE_AFTER_S - 5)
    assert run.effective_state() == "failed" and run.is_finished


WRITER = """
import sys, time
from core.runs.store import Run
run = Run(sys.argv[1])
for i in range(int(sys.argv[2])):
    run.set_status("running", step=i, note="x" * (i % 50) * 40)
    run.append_history({"epoch": i, "loss": 1.0 / (i + 1), "pad": "y" * (i % 7) * 300})
print("done", flush=True)
"""


def test_readers_never_see_partial_files(store):
    """A writer in another process rewrites status and history; every read is whole."""
    run = store.create({})
    run.append_history({"epoch": -1, "loss": 9.0, "pad": ""})
    n = 150
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run.dir), str(n)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    reads, last_rows = 0, 0
    while writer.poll() is None or reads == 0:
        status = json.loads((run.dir / "status.json").read_text())
        assert status["state"] in ("queued", "running")
        assert len(status.get("note", "")) == (status.get("step", 0) % 50) * 40
        text = (run.dir / "history.csv").read_text()
        assert text.endswith("\n")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["epoch", "loss", "pad"]
        assert all(len(r) == 3 and len(r[2]) == (int(r[0]) % 7) * 300 for r in rows[1:] if r[0] != "-1")
        assert len(rows) >= last_rows
        last_rows = len(rows)
        reads += 1
    assert writer.wait() == 0 and writer.stdout.read().strip() == "done"
    assert len(run.history()) == n + 1
    assert reads > 10


def test_crash_mid_write_keeps_the_old_file(store, monkeypatch):
    run = store.create({"strategy": "probe"})
    run.append_history({"epoch": 0, "loss": 1.0})
    run.write_metrics({"acc": 0.5})
    run.write_predictions(pd.DataFrame({"p": [0.1]}))
    run.write_progress({"batch": 1}, force=True)
    before = _contents(run.dir)

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    attempts = [
        lambda: run.set_status("running", pid=1),
        lambda: run.append_history({"epoch": 1, "loss": 0.5, "new": 1}),
        lambda: run.write_metrics({"acc": 0.9}),
        lambda: run.write_predictions(pd.DataFrame({"p": [0.9]})),
        lambda: run.write_progress({"batch": 2}, force=True),
        lambda: run.set_name("renamed"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError, match="power cut"):
            attempt()
    monkeypatch.undo()

    after = _contents(run.dir)
    assert after == before  # same files, same bytes, no temp file left behind
    assert set(p.name for p in run.dir.iterdir()) <= RUN_FILES
    assert run.status()["state"] == "queued" and run.history()["epoch"].tolist() == [0]
    assert run.metrics() == {"acc": 0.5} and run.name == run.id
