"""scripts/app.sh's server command (scripts/serve.sh, what app.sh runs once the venv is ready)
listens on 127.0.0.1 only unless TRANSFER_LAB_ADDRESS says otherwise: read from the kernel's
socket table, not from Streamlit's banner."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import _free_port
from tests.helpers import REPO

START_S = 120


def listening(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            if v6:
                found.add("::" if set(addr) == {"0"} else addr)
            else:
                found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def serve(tmp_path: Path, **env) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        ["bash", "scripts/serve.sh", "--server.port", str(port), "--server.headless", "true"],
        cwd=REPO, env={**os.environ, "TRANSFER_LAB_HOME": str(tmp_path / "home"), **env},
        stdout=open(tmp_path / f"serve-{port}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def wait_listening(proc: subprocess.Popen, port: int, tmp_path: Path) -> set[str]:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the server exited:\n" + (tmp_path / f"serve-{port}.log").read_text()[-2000:])
        found = listening(port)
        if found:
            time.sleep(0.5)  # every socket of the server is bound by now
            return listening(port)
        time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {START_S} s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass  # it had exited (the failure says why)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def test_default_is_loopback_only(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "TRANSFER_LAB_ADDRESS"}
    monkeypatch.setattr(os, "environ", env)
    proc, port = serve(tmp_path)
    try:
        assert wait_listening(proc, port, tmp_path) == {"127.0.0.1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=30) as r:
            assert r.status == 200
    finally:
        stop(proc)


def test_address_variable_opens_another_address(tmp_path):
    proc, port = serve(tmp_path, TRANSFER_LAB_ADDRESS="127.0.0.2")  # still loopback: no traffic leaves
    try:
        assert wait_listening(proc, port, tmp_path) == {"127.0.0.2"}
    finally:
        stop(proc)


def test_a_network_address_without_sign_in_is_refused(tmp_path, monkeypatch):
    """Without sign-in every visitor acts as the owner: the script refuses to listen beyond loopback."""
    monkeypatch.delenv("TRANSFER_LAB_OPEN_WITHOUT_SIGN_IN", raising=False)
    proc, port = serve(tmp_path, TRANSFER_LAB_ADDRESS="0.0.0.0")
    try:
        assert proc.wait(timeout=120) == 1
        log = (tmp_path / f"serve-{port}.log").read_text()
        assert "without sign-in" in log and "TRANSFER_LAB_OPEN_WITHOUT_SIGN_IN=" in log
        assert listening(port) == set()
    finally:
        stop(proc)


def test_the_loud_opt_in_opens_it(tmp_path):
    from core import settings

    proc, port = serve(tmp_path, TRANSFER_LAB_ADDRESS="0.0.0.0",
                       TRANSFER_LAB_OPEN_WITHOUT_SIGN_IN=settings.OPEN_WITHOUT_SIGN_IN_VALUE)
    try:
        assert wait_listening(proc, port, tmp_path) & {"0.0.0.0", "::"}
    finally:
        stop(proc)
