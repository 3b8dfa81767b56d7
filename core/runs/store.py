"""The run store: one directory per training run, every file written atomically.

A run directory is the only channel between the worker process that trains and
the pages that watch it, so each file a page may read is replaced whole
(``core.atomic``) and each read-modify-write of ``status.json`` happens under a
per-run ``flock``. A run left ``running`` by a worker that died is recognised
from its pid and process start time (same host) or a stale heartbeat.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from core import access, atomic, layout, settings
from core.errors import RunError

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})
HEARTBEAT_S = 2.0
# Only used when the pid cannot be checked (worker on another host).
STALE_AFTER_S = 30.0
PROGRESS_MIN_INTERVAL_S = 0.25
HOST = socket.gethostname()
# The module a worker process runs (``python -m WORKER_MODULE RUN_DIR``); the job tests swap in theirs.
WORKER_MODULE = "core.runs.worker"
_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9-]+$")


class RunCancelled(RunError):
    """Raised inside a training entry point when the user asked the run to stop."""

    def __init__(self, message: str = "cancelled by user") -> None:
        super().__init__(message)


def _plain(obj: Any) -> Any:
    """Numpy scalars and nested containers -> JSON-native values (``default=str`` would stringify them)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:20].strip("-") or "run"


def new_run_id(label: str) -> str:
    """``20261125-140512-featx-3f2a``: sorts by time, readable, random tail against collisions."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(label)}-{secrets.token_hex(2)}"


def process_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of a live process; None if gone or a zombie.

    Recorded beside the pid so that a recycled pid is not mistaken for our worker.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_alive(pid: int, start_time: int | None) -> bool:
    """True if ``pid`` runs and (when known) started at ``start_time``."""
    if not Path("/proc").is_dir():  # no procfs (macOS): best effort without the reuse guard
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now_start = process_start_time(pid)
    return now_start is not None and (start_time is None or now_start == start_time)


def worker_command(run_dir: Path, *then: Path) -> list[str]:
    """The command line of a run's worker process: what the app launches, and all it may signal.
    ``then``: runs the same worker takes on afterwards, in this order (the next folds of a repeated split)."""
    return [sys.executable, "-m", WORKER_MODULE, *(str(Path(d).resolve()) for d in (run_dir, *then))]


def verified_worker(status: dict, run_dir: Path) -> int | None:
    """The pid in ``status`` if it verifiably is this run's worker, else None.

    A pid alone proves nothing (recycled, or written by someone else): the process must
    run on this host, have the recorded kernel start time, and have the worker's command
    line naming this run's folder. Only then may the app signal it.
    """
    pid, start = status.get("pid"), status.get("pid_start")
    if type(pid) is not int or pid <= 1 or type(start) is not int or status.get("host") != HOST:
        return None
    if process_start_time(pid) != start:
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return None
    args = [a.decode("utf-8", "replace") for a in argv]
    _, *head, folder = worker_command(run_dir)
    starts = [i for i in range(len(args) - 2) if args[i:i + 2] == head]
    if not starts or folder not in args[starts[0] + 2:]:
        return None
    return pid if process_start_time(pid) == start else None


def death_reason(status: dict) -> str | None:
    """Why a ``running`` status has no live worker behind it, or None if it looks alive."""
    if status.get("state") != "running":
        return None
    pid = status.get("pid")
    if not pid and (status.get("cluster") or {}).get("actor"):
        return None  # dispatched to a Ray cluster, no worker yet: core.runs.cluster asks Ray about it
    if pid and status.get("host") == HOST:
        if pid_alive(pid, status.get("pid_start")):
            return None
        return f"worker process died (pid {pid}) without finishing the run; see worker.log"
    now = time.time()
    beat = status.get("heartbeat") or status.get("started") or status.get("created") or 0
    if now - beat <= STALE_AFTER_S:
        return None
    return (f"worker process died (pid {pid} on {status.get('host')}): "
            f"no heartbeat for {now - beat:.0f} s")


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    try:
        fh = open(path, "a")
    except FileNotFoundError as err:
        raise RunError(f"Run folder {path.parent} no longer exists (deleted?).") from err
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


class Run:
    """Handle on one run directory; cheap to create, reads files on demand."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.dir = Path(path)
        self.id = self.dir.name
        config = atomic.read_json(self.dir / "config.json")
        if not isinstance(config, dict):
            raise RunError(f"Run '{self.id}' not found or damaged (no readable config.json in {self.dir}).")
        self.config: dict = config

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    # -- paths ------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.dir / "model.keras"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.keras"

    @property
    def tb_dir(self) -> Path:
        return self.dir / "tb"

    @property
    def log_path(self) -> Path:
        return self.dir / "worker.log"

    def log_tail(self, lines: int = 30) -> str:
        """The worker log's last lines: what a failed run keeps as its error."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    # -- name ---------------------------------------------------------------
    @property
    def name(self) -> str:
        meta = atomic.read_json(self.dir / "meta.json", {}) or {}
        return meta.get("name") or self.id

    def set_name(self, name: str | None) -> None:
        name = (name or "").strip()
        if len(name) > 120:
            raise RunError("A run name can be at most 120 characters.")
        atomic.write_json(self.dir / "meta.json", {"name": name or None})

    # -- status -------------------------------------------------------------
    def status(self) -> dict:
        status = atomic.read_json(self.dir / "status.json")
        if not isinstance(status, dict):
            raise RunError(f"Run '{self.id}' has no readable status (deleted?).")
        return status

    @contextmanager
    def status_update(self) -> Iterator[dict]:
        """Hold the run's status lock; changes made to the yielded dict are saved on exit.

        Every writer of status.json goes through here, so a check-then-write
        (e.g. queued -> running) cannot interleave with another process's.
        """
        with _flock(self.dir / ".status.lock"):
            status = self.status()
            before = dict(status)
            yield status
            if status != before:
                if status.get("state") not in STATES:
                    raise ValueError(f"unknown run state {status.get('state')!r}")
                atomic.write_json(self.dir / "status.json", _plain(status))

    def set_status(self, state: str, **fields: Any) -> dict:
        """Set ``state`` (and fields); stamps ``started``/``finished`` when entering those states."""
        with self.status_update() as status:
            _apply(status, state, fields)
        return status

    def transition(self, from_states: str | tuple[str, ...], state: str, **fields: Any) -> bool:
        """Set ``state`` only if the current state is one of ``from_states``; True if it was set."""
        allowed = (from_states,) if isinstance(from_states, str) else tuple(from_states)
        with self.status_update() as status:
            if status["state"] not in allowed:
                return False
            _apply(status, state, fields)
        return True

    def heartbeat(self) -> None:
        with self.status_update() as status:
            if status["state"] == "running":
                status["heartbeat"] = time.time()

    def effective_status(self) -> dict:
        """The status as users should see it: a ``running`` run whose worker died is ``failed``."""
        status = self.status()
        reason = death_reason(status)
        if reason:
            status.update(state="failed", reason=reason)
        return status

    def effective_state(self) -> str:
        return self.effective_status()["state"]

    @property
    def is_finished(self) -> bool:
        return self.effective_state() in FINISHED

    # -- cancel -------------------------------------------------------------
    def request_cancel(self) -> None:
        atomic.write_text(self.dir / "cancel", f"{time.time()}\n")

    def cancel_requested(self) -> bool:
        return (self.dir / "cancel").exists()

    def raise_if_cancelled(self) -> None:
        """For training loops: stop here (worker marks the run cancelled) if asked to."""
        if self.cancel_requested():
            raise RunCancelled()

    # -- history (one row per epoch) ------------------------------------------
    def append_history(self, row: dict) -> None:
        """Add one row; new keys become new columns at the end, old rows get blanks.

        The file is small (one row per epoch), so it is rewritten whole and
        atomically: readers never see half a row.
        """
        row = _plain(row)
        with _flock(self.dir / ".history.lock"):
            path = self.dir / "history.csv"
            rows: list[dict] = []
            columns: list[str] = []
            if path.exists():
                reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
                columns = list(reader.fieldnames or [])
                rows = list(reader)
            columns += [k for k in row if k not in columns]
            rows.append(row)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic.write_text(path, buf.getvalue())

    def history(self) -> pd.DataFrame:
        path = self.dir / "history.csv"
        try:
            return pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame()

    # -- progress (per batch, throttled) -------------------------------------
    def write_progress(self, progress: dict, force: bool = False) -> bool:
        """Overwrite progress.json, at most every 0.25 s unless ``force``; True if written."""
        now = time.time()
        if not force and now - getattr(self, "_progress_at", 0.0) < PROGRESS_MIN_INTERVAL_S:
            return False
        self._progress_at = now
        atomic.write_json(self.dir / "progress.json", _plain({**progress, "updated": now}))
        return True

    def progress(self) -> dict:
        return atomic.read_json(self.dir / "progress.json", {}) or {}

    # -- results ----------------------------------------------------------
    def write_metrics(self, metrics: dict) -> None:
        atomic.write_json(self.dir / "metrics.json", _plain(metrics))

    def metrics(self) -> dict | None:
        return atomic.read_json(self.dir / "metrics.json")

    def write_predictions(self, frame: pd.DataFrame) -> None:
        with atomic.atomic_path(self.dir / "predictions.csv") as tmp:
            frame.to_csv(tmp, index=False)

    def predictions(self) -> pd.DataFrame | None:
        path = self.dir / "predictions.csv"
        return pd.read_csv(path) if path.exists() else None


def _apply(status: dict, state: str, fields: dict) -> None:
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    now = time.time()
    status["state"] = state
    if state == "running" and not status.get("started"):
        status["started"] = now
    if state in FINISHED:
        status["finished"] = now
    status.update(fields)


class RunStore:
    """Runs under one folder, or by default the team's.

    The team's store creates runs in the caller's workspace (``core.layout``) and lists
    and finds them across every user's workspace: the team compares each other's runs,
    while ``delete``/``rename`` (and ``jobs.cancel``/``kill``) check who may change one.
    ``RunStore(folder)`` is one plain folder of runs (scripts, tests).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.team = root is None
        self.root = Path(root) if root is not None else layout.workspace_dir("runs")
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def holding(cls, run: Run) -> RunStore:
        """The store a run belongs to: the team's for a run in a workspace, else its own folder."""
        return cls() if layout.owner_of(run.dir) is not None else cls(run.dir.parent)

    @property
    def lock_dir(self) -> Path:
        """Where the job queue's lock lives: one for the whole team, so limits hold server-wide."""
        return layout.home() if self.team else self.root

    def roots(self) -> list[Path]:
        """Every folder this store reads runs from."""
        if not self.team:
            return [self.root]
        found = [ws / "runs" for ws in layout.workspaces() if (ws / "runs").is_dir()]
        return found if self.root in found else [self.root, *found]

    def create(self, config: dict, name: str | None = None) -> Run:
        """Write a new queued run; its directory appears complete or not at all."""
        try:
            config_json = _plain(dict(config))
            json.dumps(config_json)
        except (TypeError, ValueError) as err:
            raise RunError(f"The run configuration cannot be saved: {err}") from err
        if settings.current_user() and not config_json.get("started_by"):
            config_json["started_by"] = settings.current_user()  # who launched it, on a server with sign-in
        label = name or str(config.get("strategy") or "run")
        root = layout.workspace_dir("runs") if self.team else self.root  # the caller's own, at this moment
        for _ in range(20):
            run_id = new_run_id(label)
            final = root / run_id
            if not final.exists():
                break
        else:
            raise RunError("Could not allocate a unique run id; try again.")
        staging = root / f".new-{run_id}"
        staging.mkdir()
        try:
            atomic.write_json(staging / "config.json", config_json)
            atomic.write_json(staging / "meta.json", {"name": (name or "").strip() or None})
            atomic.write_json(staging / "status.json", {
                "state": "queued", "created": time.time(), "started": None, "finished": None,
                "pid": None, "pid_start": None, "host": None, "heartbeat": None,
                "error": None, "reason": None,
            })
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Run(final)

    def get(self, run_id: str) -> Run:
        if not isinstance(run_id, str) or not _ID_RE.match(run_id):
            raise RunError(f"'{run_id}' is not a run id.")
        for root in self.roots():
            path = root / run_id
            if path.is_dir() and not path.is_symlink():
                return Run(path)
        raise RunError(f"Run '{run_id}' not found.")

    def list(self, state: str | tuple[str, ...] | None = None, **config_filters: Any) -> list[Run]:
        """Runs newest first, optionally by effective state and by equal config values."""
        states = (state,) if isinstance(state, str) else state
        found: list[tuple[float, str, Run]] = []
        paths = [path for root in self.roots() for path in root.iterdir()]
        for path in paths:
            if path.name.startswith(".") or not path.is_dir() or path.is_symlink():
                continue
            try:
                run = Run(path)
                status = run.effective_status()
            except RunError:
                continue  # half-deleted or foreign folder
            if states and status["state"] not in states:
                continue
            if any(run.config.get(k) != v for k, v in config_filters.items()):
                continue
            found.append((status.get("created") or 0.0, run.id, run))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [run for _, _, run in found]

    def rename(self, run_id: str, name: str | None) -> Run:
        run = self.get(run_id)
        access.check_may_change(run.dir, f"Run '{run.name}'")
        run.set_name(name)
        return run

    def delete(self, run_id: str) -> None:
        """Remove a run; refused while it runs. The folder is moved aside under the status
        lock, so a queued run cannot be started by a concurrent ``jobs.pump`` meanwhile."""
        run = self.get(run_id)
        access.check_may_change(run.dir, f"Run '{run.name}'")
        with run.status_update() as status:
            if status["state"] == "running" and not death_reason(status):
                raise RunError(f"Run '{run.name}' is still running; cancel it before deleting.")
            trash = run.dir.parent / f".deleted-{run.id}-{secrets.token_hex(2)}"
            os.rename(run.dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
