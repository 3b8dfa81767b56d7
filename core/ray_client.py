"""The connection to a Ray cluster (``TRANSFER_LAB_RAY_ADDRESS``), shared by everything that
sends work there: runs (``core.runs.cluster``) and sharded feature extraction
(``core.features.sharded``). It sits below both, beside the other foundation modules, so the
feature layer never reaches up into the run layer. Ray is imported only when a cluster is
configured.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from core import settings
from core.errors import ClusterError

ADDRESS_ENV = settings.RAY_ADDRESS_ENV
NAMESPACE = "transfer-lab"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Variables a node's processes get from the dispatcher besides every TRANSFER_LAB_* one.
PASSED_ENV = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")

_lock = threading.Lock()
_connected: str | None = None
RETRY_AFTER_S = 30.0  # an unreachable cluster is not asked again (pages refresh every 2 s) before this
_failed: tuple[str, float, str] | None = None  # (address, when, message) of the last failed connection


def address() -> str | None:
    """The Ray cluster runs go to (``$TRANSFER_LAB_RAY_ADDRESS``: ``host:port`` of the head, or
    ``ray://host:10001``), or None: runs stay on this machine."""
    return settings.ray_address()


def enabled() -> bool:
    return address() is not None


def connect():
    """The ``ray`` module, connected to the configured cluster (once per process)."""
    global _connected, _failed
    addr = address()
    if addr is None:
        raise ClusterError(f"No Ray cluster is configured: set {ADDRESS_ENV} to the head node's host:port.")
    try:
        import ray
    except ImportError as err:
        raise ClusterError(f"{ADDRESS_ENV} is set but Ray is not installed here ({err}); "
                           "install the requirements (pip install -r requirements.txt).") from err
    with _lock:
        if ray.is_initialized():
            if _connected not in (None, addr) and not _inside_ray_worker(ray):
                raise ClusterError(f"This process is connected to the Ray cluster at {_connected}, "
                                   f"not {addr}; restart it to change {ADDRESS_ENV}.")
            return ray
        if _failed and _failed[0] == addr and time.monotonic() - _failed[1] < RETRY_AFTER_S:
            raise ClusterError(_failed[2])
        try:
            _probe(addr)  # ray.init waits minutes on an address nobody answers: fail in seconds instead
            host = addr.rsplit(":", 1)[0]
            local = {"_node_ip_address": host} if host.startswith("127.") else {}  # a loopback cluster stays on it
            ray.init(address=addr, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False, **local)
        except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            message = f"Cannot reach the Ray cluster at {addr} ({ADDRESS_ENV}): {text}"
            _failed = (addr, time.monotonic(), message)
            raise ClusterError(message) from err
        _connected, _failed = addr, None
    return ray


def _probe(addr: str, timeout: float = 3.0) -> None:
    """Open (and close) a TCP connection to the head's ``host:port``; OSError if nobody answers."""
    import socket

    host, _, port = addr.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"'{addr}' is not host:port")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def _inside_ray_worker(ray) -> bool:
    try:
        return ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001
        return False


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a node's processes get: the dispatcher's TRANSFER_LAB_* settings (the
    server's data directory and weights) and this checkout on ``PYTHONPATH``."""
    env = settings.passed_to_workers(PASSED_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != str(REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
