"""Runs on a Ray cluster: with ``TRANSFER_LAB_RAY_ADDRESS`` set, ``core.runs.jobs`` dispatches
each queued run to the cluster instead of starting a local process.

One run = one detached, named Ray actor (``tl-run-<id>-<path hash>`` in namespace
``transfer-lab``) holding the CPUs/GPUs the run's config asks for (``num_cpus``, default 1;
``num_gpus``, default 0). The actor starts the *same* worker entry point as a local run,
``python -m core.runs.worker RUN_DIR``, as a child process on its node, with its output in
the run's ``worker.log``; the child dies with the actor (``PR_SET_PDEATHSIG``). The run store
must be on a path every node sees at the same place (a shared filesystem with working
``flock``), and so must the Transfer Lab checkout (it goes on the actor's ``PYTHONPATH``).

Everything else goes through the run store files exactly as for a local run: progress,
history and live curves, the cancel flag, heartbeats, the verdict. What the cluster adds:

- where the run ran: ``status["cluster"]`` gets the Ray node id and IP, the worker's
  ``host`` and ``pid`` are recorded by the worker itself;
- a run whose actor is gone (node lost, actor killed) is failed by the next ``pump`` with
  that reason; a worker killed under a live actor is failed by the actor with the signal;
- a hard stop kills the actor (``ray.kill``), which takes its worker with it.

The actor is detached so a run outlives the process that dispatched it (the CLI's
``--background``, a restarted dashboard); it exits when its worker has ended. Ray is
imported only here and in ``core.ray_client`` (the connection), and only when a cluster is configured.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core import settings
from core.errors import ClusterError
from core.ray_client import NAMESPACE, REPO_ROOT, address, connect, enabled, node_env
from core.runs.store import HOST, Run, worker_command

ACTOR_ENV = settings.RAY_ACTOR_ENV
_lock = threading.Lock()
_remote_actor = None  # RunActor as a Ray actor class, made once per process


def actor_name(run) -> str:
    digest = hashlib.sha256(str(Path(run.dir).resolve()).encode()).hexdigest()[:8]
    return f"tl-run-{run.id}-{digest}"


def resources(config: dict) -> tuple[float, float]:
    """CPUs and GPUs a run asks the cluster for: ``num_cpus`` (default 1), ``num_gpus`` (default 0)."""
    try:
        cpus = float(config.get("num_cpus", 1) if config.get("num_cpus") is not None else 1)
        gpus = float(config.get("num_gpus", 0) or 0)
    except (TypeError, ValueError):
        raise ClusterError(f"A run's num_cpus and num_gpus must be numbers, not "
                           f"{config.get('num_cpus')!r} and {config.get('num_gpus')!r}.") from None
    if cpus < 0 or gpus < 0:
        raise ClusterError("A run cannot ask for a negative number of CPUs or GPUs.")
    return cpus, gpus


# ---------------------------------------------------------------- dispatch (called by core.runs.jobs)

def dispatch(run, status: dict) -> None:
    """Start ``run``'s actor on the cluster; called by ``jobs`` holding the run's status lock
    with the run queued. Sets the status to running (not yet claimed by a worker)."""
    ray = connect()
    cpus, gpus = resources(run.config)
    name = actor_name(run)
    env = node_env({ACTOR_ENV: name})
    global _remote_actor
    try:
        _remote_actor = _remote_actor or ray.remote(RunActor)
        actor = _remote_actor.options(
            name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=cpus, num_gpus=gpus, max_restarts=0,
            max_concurrency=1, runtime_env={"env_vars": env},
        ).remote(name)
        actor.run.remote(str(run.dir), worker_command(run.dir)[1:])
    except Exception as err:  # noqa: BLE001
        raise ClusterError(f"The Ray cluster at {address()} refused run '{run.id}': {err}") from err
    now = time.time()
    status.update(state="running", started=now, heartbeat=now, pid=None, pid_start=None, host=None,
                  cluster={"address": address(), "actor": name, "namespace": NAMESPACE,
                           "num_cpus": cpus, "num_gpus": gpus, "node_id": None, "node_ip": None})


def _actor(name: str):
    """The actor of that name in the app's own namespace, or None if the cluster has none."""
    try:
        return connect().get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def lost_reason(status: dict) -> str | None:
    """For a running cluster run: why it has no actor any more, or None (alive, pending, or this
    process has no cluster configured to ask)."""
    info = status.get("cluster") or {}
    if status.get("state") != "running" or not info.get("actor") or not enabled():
        return None
    if _actor(str(info["actor"])) is not None:
        return None
    where = f" on Ray node {info['node_ip']}" if info.get("node_ip") else ""
    if not status.get("pid"):
        return f"the Ray cluster lost the run before it started{where} (actor {info['actor']} is gone)"
    return (f"the run's Ray actor{where} is gone (node lost or actor killed) with worker pid "
            f"{status.get('pid')} on {status.get('host')} still unfinished; see worker.log")


def stop(run) -> bool:
    """Kill a cluster run's actor (and with it its worker); True if there was one to kill.

    The actor is named from the run itself in the app's namespace, never from what its
    status says, so no stored name can point this at another actor."""
    actor = _actor(actor_name(run))
    if actor is None:
        return False
    connect().kill(actor, no_restart=True)
    return True


def where(status: dict) -> str:
    """Where a run ran (or runs), for the dashboard: ``Ray node 10.0.0.5 (gpu-box)`` or the host."""
    info = status.get("cluster") or {}
    if info:
        if info.get("node_ip") or status.get("host"):
            host = status.get("host") or info.get("host")
            node = f"node {info['node_id'][:8]}" if info.get("node_id") else ""
            details = ", ".join(x for x in (host, node) if x)
            return f"Ray node {info.get('node_ip') or '?'}" + (f" ({details})" if details else "")
        return "Ray cluster (waiting for a node)" if status.get("state") == "running" else "Ray cluster"
    return status.get("host") or ""


# ---------------------------------------------------------------- on the node

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The worker is killed when its actor's process dies (ray.kill, a lost node): Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RunActor:
    """One run on a node: start the worker, wait for it, record a death it could not record."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, run_dir: str, worker_args: list[str]) -> int:
        import subprocess

        import ray


        code = 3
        try:
            run = Run(run_dir)
            ctx = ray.get_runtime_context()
            with run.status_update() as status:
                info = status.get("cluster") or {}
                ours = status["state"] == "running" and info.get("actor") == self.name and not status.get("pid")
                if ours:
                    info.update(node_id=ctx.get_node_id(), node_ip=ray.util.get_node_ip_address(), host=HOST,
                                actor_pid=os.getpid())
                    status["cluster"] = info
                    status["heartbeat"] = time.time()
                    if run.cancel_requested():
                        status.update(state="cancelled", finished=time.time(), reason="cancelled before it started")
                        ours = False
            if ours:
                with open(run.log_path, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, *worker_args], cwd=REPO_ROOT,
                        env=settings.child_process_env(**{ACTOR_ENV: self.name}), stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
                code = proc.wait()  # a worker that finishes starts the next queued run itself
                self._record_exit(run, proc.pid, code)
        finally:
            ray.actor.exit_actor()  # free the run's CPUs/GPUs: one actor per run
        return code

    def _record_exit(self, run, pid: int, code: int) -> None:
        """A worker that died without its verdict: the run fails with how; the next pump
        (the dashboard's refresh, the command line) starts the next run, as for a local worker."""
        with run.status_update() as status:
            if status["state"] != "running" or status.get("pid") not in (None, pid):
                return  # the worker recorded its verdict (done, cancelled, failed)
            if code < 0:
                how = f"was killed by {signal.Signals(-code).name}"
            else:
                how = f"exited with code {code}"
            node = (status.get("cluster") or {}).get("node_ip") or "?"
            status.update(state="failed", finished=time.time(),
                          reason=f"worker process (pid {pid} on {HOST}, Ray node {node}) {how} without finishing "
                                 "the run; see worker.log", error=run.log_tail() or None)


def describe() -> dict[str, Any]:
    """The cluster as this process sees it (for the command line and Settings): address, nodes, CPUs, GPUs."""
    ray = connect()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return {"address": address(), "nodes": [{"ip": n.get("NodeManagerAddress"), "id": n.get("NodeID"),
                                             "cpus": n.get("Resources", {}).get("CPU", 0),
                                             "gpus": n.get("Resources", {}).get("GPU", 0)} for n in nodes],
            "cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0)}
