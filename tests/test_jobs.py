"""Background jobs with real worker processes: queue, cancel, crash, failure, races."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import settings
from core.runs import jobs
from core.errors import RunError, StorageError
from core.runs.store import Run, RunStore, pid_alive
from tests.helpers import wait_for, worker_log

REPO = Path(__file__).resolve().parents[1]



def new(store: RunStore, target: str, **config) -> Run:
    return store.create({"target": target, "strategy": target, **config})


def state(run: Run) -> str:
    return run.status()["state"]


def wait_state(run: Run, *states: str, timeout=30.0) -> dict:
    wait_for(lambda: state(run) in states, timeout, f"{run.id} to be {states}; log:\n{worker_log(run)}")
    return run.status()


def starts(run: Run) -> list[str]:
    path = run.dir / "starts.log"
    return path.read_text().split() if path.exists() else []


def test_worker_runs_entry_to_done(store):
    run = new(store, "epochs", epochs=3)
    jobs.submit(run)
    status = wait_state(run, "done")
    assert run.history()["epoch"].tolist() == [0, 1, 2]
    assert run.progress()["epoch"] == 3
    assert status["started"] <= status["finished"] and status["reason"] is None and status["error"] is None
    assert len(starts(run)) == 1 and int(starts(run)[0]) == status["pid"]
    assert f"run {run.id} ended done" in worker_log(run)
    with pytest.raises(RunError, match="is done"):
        jobs.submit(run)


def test_queue_runs_one_at_a_time_and_starts_the_next_by_itself(store):
    first, second = new(store, "gate"), new(store, "epochs", epochs=2)
    jobs.submit(first)
    jobs.submit(second)
    wait_for(lambda: starts(first), what="first worker to enter its entry point")
    assert state(first) == "running" and state(second) == "queued"
    assert jobs.pump(store) == [] and state(second) == "queued"
    beat = first.status()["heartbeat"]
    wait_for(lambda: first.status()["heartbeat"] > beat, timeout=10, what="a heartbeat")
    (first.dir / "go").touch()
    wait_state(second, "done")  # started by the first worker's own pump, not by the test
    assert state(first) == "done"
    assert second.status()["started"] >= first.status()["finished"]
    assert len(starts(second)) == 1


@pytest.mark.parametrize("target", ["epochs", "epochs_soft"])
def test_cancel_mid_run_keeps_history(store, target):
    run = new(store, target, epochs=50, sleep=0.1)
    jobs.submit(run)
    wait_for(lambda: len(run.history()) >= 2, what="two epochs")
    assert jobs.cancel(run) == "running"  # the worker stops at its next check
    status = wait_state(run, "cancelled", "done", "failed")
    assert status["state"] == "cancelled" and status["reason"] == "cancelled by user"
    assert 2 <= len(run.history()) < 50


def test_the_folds_of_one_launch_train_one_after_another_in_one_worker(store):
    """The queue hands a repeated split's queued folds to the worker it starts for the first (one
    interpreter, one backbone load for all of them); a kill still reaches that worker through any of
    its folds, and the folds after the killed one wait for the next worker."""
    group = "folds-20261207-150000-abcd"
    quick = [new(store, "epochs", epochs=1, fold_group=group) for _ in range(2)]
    stuck = new(store, "forever", fold_group=group)
    after = new(store, "epochs", epochs=1, fold_group=group)
    other = new(store, "epochs", epochs=1)  # not of the group: its own worker, after the group's
    for run in [*quick, stuck, after, other]:
        jobs.submit(run)
    wait_for(lambda: starts(stuck), what="the third fold to start")
    worker_pid = int(starts(quick[0])[0])
    assert [int(p) for r in (*quick, stuck) for p in starts(r)] == [worker_pid] * 3
    assert quick[0].status()["finished"] <= quick[1].status()["started"]
    assert state(after) == "queued" and state(other) == "queued"
    assert jobs.kill(stuck)  # verified as this fold's worker: its command line names the fold
    wait_for(lambda: not pid_alive(worker_pid, stuck.status().get("pid_start")), timeout=5, what="the worker to die")
    assert jobs.pump(store) == [after]
    wait_state(after, "done")
    wait_state(other, "done")
    assert int(starts(after)[0]) != worker_pid and int(starts(other)[0]) not in (worker_pid, int(starts(after)[0]))


def test_cancel_queued_run_never_starts(store):
    first, second = new(store, "gate"), new(store, "epochs")
    jobs.submit(first)
    jobs.submit(second)
    assert jobs.cancel(second) == "cancelled"
    assert second.status()["reason"] == "cancelled before it started"
    (first.dir / "go").touch()
    wait_state(first, "done")
    third = new(store, "epochs", epochs=1)
    jobs.submit(third)
    wait_state(third, "done")
    assert state(second) == "cancelled" and starts(second) == []


def test_killed_worker_is_failed_and_the_queue_moves_on(store):
    victim, waiting = new(store, "forever"), new(store, "epochs", epochs=1)
    jobs.submit(victim)
    jobs.submit(waiting)
    wait_for(lambda: starts(victim), what="worker to start")
    pid = victim.status()["pid"]
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    wait_for(lambda: not pid_alive(pid, victim.status()["pid_start"]), what="the worker to die")
    assert state(victim) == "running" and victim.effective_state() == "failed"
    assert jobs.pump(store) == [waiting]
    status = victim.status()
    assert status["state"] == "failed" and f"worker process died (pid {pid})" in status["reason"]
    assert f"run {victim.id} started" in status["error"]  # the worker.log tail
    wait_state(waiting, "done")


def test_failing_entry_records_traceback(store):
    run = new(store, "fail")
    jobs.submit(run)
    status = wait_state(run, "failed", "done")
    assert status["state"] == "failed"
    assert status["reason"] == "ValueError: boom: learning rate must be positive"
    assert "Traceback (most recent call last)" in status["error"] and "jobs_targets.py" in status["error"]
    assert run.history()["loss"].tolist() == [2.0]


def test_a_run_whose_work_fails_to_start_fails_with_a_reason(store):
    run = store.create({"target": "no_such_function"})
    jobs.submit(run)
    status = wait_state(run, "failed", "done")
    assert status["reason"] == "No test target 'no_such_function'."


def test_kill_stops_a_run_that_ignores_cancel(store):
    run = new(store, "forever")
    jobs.submit(run)
    wait_for(lambda: starts(run), what="worker to start")
    assert jobs.cancel(run) == "running"
    time.sleep(0.3)
    assert state(run) == "running"
    pid, pid_start = run.status()["pid"], run.status()["pid_start"]
    assert jobs.kill(run)
    assert run.status()["state"] == "failed" and run.status()["reason"] == "killed by user"
    wait_for(lambda: not pid_alive(pid, pid_start), timeout=5, what="the worker to die")
    assert not jobs.kill(run)


def test_sigterm_marks_the_run_failed_at_once(store):
    run = new(store, "forever")
    jobs.submit(run)
    wait_for(lambda: starts(run), what="worker to start")
    os.kill(run.status()["pid"], signal.SIGTERM)
    status = wait_state(run, "failed", timeout=10)
    assert status["reason"] == "worker stopped by signal SIGTERM" and "_Terminated" in status["error"]


@pytest.mark.parametrize("name, read", [(settings.MAX_JOBS_ENV, settings.max_jobs),
                                        (settings.MAX_USER_JOBS_ENV, settings.max_jobs_per_user)])
def test_job_limits_from_environment(monkeypatch, name, read):
    monkeypatch.delenv(name, raising=False)
    assert read() == 1
    monkeypatch.setenv(name, "3")
    assert read() == 3
    monkeypatch.setenv(name, "0")
    assert read() == 1
    monkeypatch.setenv(name, "two")
    with pytest.raises(StorageError, match="whole number"):
        read()


def test_worker_refuses_a_run_it_does_not_own(store):
    run = new(store, "epochs")
    run.set_status("done")
    out = subprocess.run([sys.executable, "-m", "core.runs.worker", str(run.dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "not starting it" in out.stdout
    assert state(run) == "done" and starts(run) == []


PUMPER = """
import sys, time
from core.runs import store as run_store
from core.runs.jobs import pump
from core.runs.store import RunStore
run_store.WORKER_MODULE = "tests.jobs_worker"
store = RunStore()  # the team's, in TRANSFER_LAB_HOME
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(len(pump(store, int(sys.argv[3]))))
"""


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrent_pumps_start_each_run_once(store, limit, monkeypatch):
    """Processes pumping at the same instant respect the limit and never double-start a run."""
    monkeypatch.setenv(settings.MAX_USER_JOBS_ENV, str(limit))
    queued = [new(store, "gate") for _ in range(20)]  # a longer listing widens the race window
    go_at = time.time() + 1.5
    pumpers = [subprocess.Popen([sys.executable, "-c", PUMPER, "team", str(go_at), str(limit)],
                                cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    started = sum(int(p.communicate(timeout=60)[0]) for p in pumpers)
    assert started == limit
    running = [r for r in queued if state(r) == "running"]
    assert running == queued[:limit]  # oldest first
    for run in running:
        wait_for(lambda: starts(run), what="worker to start")
    time.sleep(0.5)
    assert all(len(starts(r)) == 1 for r in running)
    assert all(state(r) == "queued" and starts(r) == [] for r in queued[limit:])


def test_pump_waits_for_the_queue_lock(store):
    """While one pump holds the lock, a pump in another process cannot start anything."""
    run = new(store, "epochs", epochs=1)
    with jobs._queue_lock(store.lock_dir):
        pumper = subprocess.Popen([sys.executable, "-c", PUMPER, "team", "0", "1"],
                                  cwd=REPO, stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert pumper.poll() is None and state(run) == "queued"
    assert pumper.communicate(timeout=60)[0].strip() == "1"
    wait_state(run, "done")
