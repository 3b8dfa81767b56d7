"""A real Ray cluster of N nodes on this machine, for the ``cluster`` test tier and the cluster
benchmark: ``ray start --head`` and ``ray start --address`` (``--block``, one process group
each), this process connected as a driver through ``core.runs.cluster``, and everything stopped
at the end whatever happens: the nodes, their Ray workers and the run workers they started,
found as descendants of the nodes we started (never by name).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from benchmarks.common import free_port

RAY = Path(sys.executable).with_name("ray")


# A loopback address Ray keeps: it swaps 127.0.0.1 (and "localhost") for the machine's network
# address (ray._private.services.resolve_ip_for_localhost), so its traffic would leave loopback.
NODE_IP = "127.0.0.2"


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, process group, start time) of a process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def processes_of(groups: set[int]) -> dict[int, int]:
    """``pid -> start time`` of the live processes in the process groups ``groups`` and of all their
    descendants (Ray workers lead their own session, and so do the run workers they start)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            stat = _stat(int(entry.name))
            if stat and stat[0] not in "ZX":
                table[int(entry.name)] = stat
    ours = {pid for pid, (_, _, group, _) in table.items() if group in groups}
    while True:
        more = {pid for pid, (_, parent, _, _) in table.items() if parent in ours} - ours
        if not more:
            return {pid: table[pid][3] for pid in ours}
        ours |= more


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """SIGTERM the node (``ray start --block`` then stops its processes) if the process that started
    it dies without its cleanup (a killed pytest): no cluster is left behind. Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def local_ray_cluster(nodes: int = 2, cpus: int = 1, object_store_mb: int = 200) -> Iterator[dict]:
    """Start the cluster, connect, yield ``{"address", "node_ids", "groups"}``; stop it all on exit.
    Sets ``TRANSFER_LAB_RAY_ADDRESS`` while connecting only; callers set it where they need it."""
    from core import ray_client, settings

    base = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))  # short: Ray's socket paths are limited
    port = free_port()
    address = f"{NODE_IP}:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--num-cpus", str(cpus), "--object-store-memory", str(object_store_mb * 2**20),
              "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    left: list[int] = []
    try:
        for i in range(nodes):
            log_path = base / f"node{i}.log"
            args = (["--head", "--node-ip-address", NODE_IP, "--port", str(port), "--ray-client-server-port",
                     str(free_port()), "--include-dashboard", "false"] if i == 0
                    else ["--address", address, "--node-ip-address", NODE_IP])
            with open(log_path, "wb") as log:
                procs.append(subprocess.Popen([str(RAY), "start", *args, "--temp-dir", str(base / f"n{i}"), *common],
                                              env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, preexec_fn=_stop_with_parent))
            if i == 0:
                _wait(lambda: b"Ray runtime started" in log_path.read_bytes() or procs[0].poll() is not None,
                      90, "the head node to start")
                if procs[0].poll() is not None:
                    raise RuntimeError("the head node did not start:\n" + log_path.read_text()[-3000:])
        saved = os.environ.get(settings.RAY_ADDRESS_ENV)
        os.environ[settings.RAY_ADDRESS_ENV] = address
        try:
            ray = ray_client.connect()
        finally:
            if saved is None:
                os.environ.pop(settings.RAY_ADDRESS_ENV, None)
            else:
                os.environ[settings.RAY_ADDRESS_ENV] = saved
        _wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) == nodes or any(p.poll() is not None for p in procs),
              90, f"{nodes} nodes to join")
        dead = [i for i, p in enumerate(procs) if p.poll() is not None]
        if dead:
            raise RuntimeError(f"node {dead[0]} stopped:\n" + (base / f"node{dead[0]}.log").read_text()[-3000:])
        yield {"address": address, "node_ids": {n["NodeID"] for n in ray.nodes() if n["Alive"]},
               "groups": {p.pid for p in procs}}
    finally:
        left = _stop(procs)
        shutil.rmtree(base, ignore_errors=True)
    if left:
        raise RuntimeError(f"Ray processes left running after the cluster stopped: {left}")


def _stop(procs: list[subprocess.Popen]) -> list[int]:
    """Disconnect, stop the nodes, kill what they leave; returns pids still alive (none expected)."""
    from core import ray_client
    from core.features import sharded
    from core.runs import cluster

    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()
    ray_client._connected = cluster._remote_actor = sharded._remote_shard = None
    groups = {p.pid for p in procs}
    started = processes_of(groups)  # before the nodes go: their workers are found as descendants
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    for pid, start in {**started, **processes_of(groups)}.items():
        stat = _stat(pid)
        if stat and stat[3] == start and stat[0] not in "ZX":
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    time.sleep(0.5)
    return [pid for pid, start in started.items() if (stat := _stat(pid)) and stat[3] == start and stat[0] not in "ZX"]
