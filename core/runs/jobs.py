"""Background training jobs: one detached worker process per run, a FIFO queue.

With ``TRANSFER_LAB_RAY_ADDRESS`` set, a run's worker is started on a Ray cluster instead
(``core.runs.cluster``: one actor per run); the queue, the limit and the run store are the same.

Workers are separate processes (``python -m core.runs.worker RUN_DIR``) in their own
session, so training survives Streamlit reruns, page changes and closed tabs.
There is no scheduler daemon: ``pump`` is called by pages on each render and by
each worker as it finishes. One lock for the team's store (in the data directory)
makes concurrent pumps (several browser sessions, finishing workers) start each
run once and respect both limits: the server's and each user's.

Stopping is guarded: a run's owner (or an admin) may cancel or kill it, and a kill
signals a process only when it verifiably is that run's worker
(``store.verified_worker``: host, start time and command line).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core import access, layout, ray_client, settings
from core.errors import RunError
from core.runs import cluster
from core.train import folds
from core.runs.store import HOST, Run, RunStore, death_reason, process_start_time, verified_worker, worker_command

REPO_ROOT = Path(__file__).resolve().parents[2]

# Workers this process started; polled so that finished ones do not linger as zombies.
_children: dict[int, subprocess.Popen] = {}


@contextmanager
def _queue_lock(folder: Path) -> Iterator[None]:
    with open(folder / ".jobs.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def _mark_dead(run: Run) -> bool:
    """Mark a run whose worker vanished as failed (keeping the log tail); True if it was."""
    with run.status_update() as status:
        reason = death_reason(status) or cluster.lost_reason(status)  # the latter: Ray runs only
        if not reason:
            return False
        status.update(state="failed", finished=time.time(), reason=reason, error=run.log_tail() or None)
    return True


def _start(run: Run, then: list[Run] = ()) -> bool:
    """Launch the worker for a queued run; the status lock is held until pid is recorded.
    ``then``: queued runs the same worker takes on afterwards (``_next_folds``)."""
    with run.status_update() as status:
        if status["state"] != "queued":
            return False
        if run.cancel_requested():
            status.update(state="cancelled", finished=time.time(), reason="cancelled before it started")
            return False
        if ray_client.enabled():  # TRANSFER_LAB_RAY_ADDRESS: one Ray actor per run, same worker entry point
            cluster.dispatch(run, status)
            return True
        try:
            with open(run.log_path, "ab") as log:
                proc = subprocess.Popen(
                    worker_command(run.dir, *(r.dir for r in then)), cwd=REPO_ROOT,
                    env=settings.child_process_env(PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                )
        except OSError as err:
            status.update(state="failed", finished=time.time(), reason=f"could not start the worker: {err}")
            return False
        _children[proc.pid] = proc
        now = time.time()
        status.update(state="running", started=now, heartbeat=now, pid=proc.pid,
                      pid_start=process_start_time(proc.pid), host=HOST)
    return True


def _owner(run: Run) -> str:
    return layout.owner_of(run.dir) or ""


def _next_folds(run: Run, queued: list[Run]) -> list[Run]:
    """The other queued folds of ``run``'s repeated split (same group, same owner), oldest first: one
    worker trains them one after another, so the backbone is loaded and traced once for all k folds
    (``core.train.loop.Context.backbone``), not once per process. A fold another worker claims first
    is skipped by this one (``core.runs.worker``: a run is claimed under its status lock)."""
    group = folds.valid_group(run.config.get(folds.FOLD_GROUP_KEY))
    if not group:
        return []
    return [q for q in queued if q is not run and q.config.get(folds.FOLD_GROUP_KEY) == group
            and _owner(q) == _owner(run)]


def pump(store: RunStore | None = None, max_concurrent: int | None = None) -> list[Run]:
    """Fail runs whose worker died, then start queued runs (oldest first) within the limits:
    the server's (``max_concurrent`` or ``$TRANSFER_LAB_MAX_JOBS``) and each user's
    (``$TRANSFER_LAB_MAX_JOBS_PER_USER``; a user over it waits, the others go ahead).

    Cheap and idempotent: call it on every page render. Returns the runs it started.
    """
    store = store or RunStore()
    limit = settings.max_jobs() if max_concurrent is None else max(1, int(max_concurrent))
    per_user = settings.max_jobs_per_user() if store.team else limit
    started: list[Run] = []
    _reap()
    if ray_client.enabled():
        ray_client.connect()  # an unreachable cluster is said once, not swallowed run by run below
    with _queue_lock(store.lock_dir):
        running: dict[str, int] = {}
        queued: list[Run] = []
        for run in store.list():
            try:
                state = run.status()["state"]
                if state == "running" and not _mark_dead(run):
                    running[_owner(run)] = running.get(_owner(run), 0) + 1
                elif state == "queued":
                    queued.append(run)
            except RunError:
                continue  # deleted meanwhile
        oldest_first = queued[::-1]
        for run in oldest_first:
            if sum(running.values()) >= limit:
                break
            if running.get(_owner(run), 0) >= per_user:
                continue
            try:
                if _start(run, _next_folds(run, oldest_first)):
                    started.append(run)
                    running[_owner(run)] = running.get(_owner(run), 0) + 1
            except RunError:
                continue
    return started


def submit(run: Run, max_concurrent: int | None = None) -> Run:
    """Queue a newly created run and start it if a slot is free."""
    state = run.status()["state"]
    if state != "queued":
        raise RunError(f"Run '{run.name}' is {state}; create a new run to train again.")
    pump(RunStore.holding(run), max_concurrent)
    return run


def cancel(run: Run) -> str:
    """Ask a run to stop; a queued run is cancelled at once. Returns the state after the request.

    A running worker sees the request at its next check (between batches or
    epochs) and ends as ``cancelled`` keeping the history written so far.
    Only the run's owner or an admin may (``AccessDenied`` otherwise).
    """
    access.check_may_change(run.dir, f"Run '{run.name}'")
    run.request_cancel()
    run.transition("queued", "cancelled", reason="cancelled before it started")
    with run.status_update() as status:  # on a Ray cluster and not started yet: no worker will see the flag
        if status["state"] == "running" and (status.get("cluster") or {}).get("actor") and not status.get("pid"):
            cluster.stop(run)
            status.update(state="cancelled", finished=time.time(), reason="cancelled before it started")
    return run.effective_state()


def kill(run: Run, reason: str = "killed by user") -> bool:
    """Hard-stop a running worker (SIGKILL to its process group) and mark the run failed.

    Only the run's owner or an admin may. The signal goes only to a process that
    verifiably is this run's worker; anything else the status names is left alone.
    """
    access.check_may_change(run.dir, f"Run '{run.name}'")
    with run.status_update() as status:
        if status["state"] != "running":
            return False
        pid = verified_worker(status, run.dir)
        if pid is not None:
            try:  # workers lead their own session: take their helper processes too
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited meanwhile
        if (status.get("cluster") or {}).get("actor"):
            cluster.stop(run)  # ray.kill: this run's actor, and its worker with it, on whichever node
        status.update(state="failed", finished=time.time(), reason=reason)
    _reap()
    return True
