"""Browser tier: a real `streamlit run` on a free loopback port, driven by Debian's
headless Chromium through Selenium. Screenshots go to a folder that is printed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import REPO, SHARED, SHARED_WEIGHTS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("TRANSFER_LAB_SCREENSHOTS", "/tmp/transfer-lab-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def app_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser_home")


def require_chromium() -> None:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("Chromium missing: run scripts/install_browser.sh")


@contextmanager
def streamlit_server(home: Path, extra_env: dict | None = None, args: tuple = (), port: int | None = None):
    """`streamlit run streamlit_app.py` on a free loopback port with ``home`` as its data directory
    (``extra_env``, ``args``: more variables and command-line options); yields (process, url,
    seconds from start to healthy, start time) and stops it afterwards."""
    port = port or _free_port()
    env = {**os.environ, "TRANSFER_LAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2",
           # typed paths must lie in allowed roots: the test's temporary folders and the shared assets
           "TRANSFER_LAB_DATA_ROOTS": os.pathsep.join([str(home.parent), str(SHARED)]), **(extra_env or {})}
    env.pop("TRANSFER_LAB_WEIGHTS_DIR", None)
    if SHARED_WEIGHTS.is_dir():
        env["TRANSFER_LAB_WEIGHTS_DIR"] = str(SHARED_WEIGHTS)
    if (SHARED / "datasets").is_dir():
        env["TRANSFER_LAB_SAMPLES_DIR"] = str(SHARED / "datasets")
    log = open(home / "streamlit.log", "w+")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while not _healthy(url):
            if proc.poll() is not None or time.perf_counter() - start > START_TIMEOUT_S:
                log.seek(0)
                pytest.fail(f"streamlit did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield proc, url, time.perf_counter() - start, start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def app_server(app_home):
    """The app for the browser tier; yields (url, seconds from start to healthy, start time)."""
    require_chromium()
    with streamlit_server(app_home) as (_, url, healthy_s, start):
        yield url, healthy_s, start


@contextmanager
def oidc_provider(log: Path, users: list[dict]):
    """oidc-provider-mock on a free loopback port with ``users`` predefined (claims, each with a
    "sub": its authorization page offers one button per user, ``button[value=SUB]``); yields its
    base URL and stops it afterwards."""
    import json

    port = _free_port()
    claims = [arg for user in users for arg in ("--user-claims", json.dumps(user))]
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port),
                             *claims], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/.well-known/openid-configuration", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the OIDC provider did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def auth_secrets(path: Path, port: int, issuer: str, cookie_secret: str) -> Path:
    """A secrets file with an ``[auth]`` section for an app on ``port`` signing in at ``issuer``
    (pass it to ``streamlit_server`` as ``args=("--secrets.files", str(path))``)."""
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{cookie_secret}"\n'
        'client_id = "transfer-lab"\nclient_secret = "test-secret"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n')
    return path


@contextmanager
def chromium():
    """A headless Chromium with its own fresh profile (so its own app session), quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(120)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def driver():
    with chromium() as drv:
        yield drv
