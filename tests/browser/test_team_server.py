"""A team server, for real: sign-in through a local OpenID Connect provider (oidc-provider-mock
on 127.0.0.1, started here) with Chromium clicking through it, the run the signed-in user
starts recorded under their name and shown on the curves page; and two sessions without
sign-in (the app opens as before), where one moving its data directory and backbone leaves
the other's dataset, runs and backbone alone. Screenshots of the sign-in page, the signed-in
sidebar and the Settings panel."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.runs import jobs
from core.runs.store import RunStore
from tests.browser.conftest import _free_port, chromium, require_chromium, streamlit_server
from tests.browser.test_concurrent_sessions import pick_backbone, shown_backbone
from tests.browser.ui import (assert_clean, click, click_button, css, nav, scan_folder, screenshot, text_of,
                              wait_for, wait_idle)
from tests.helpers import SHARED_WEIGHTS, write_images

pytestmark = pytest.mark.browser

USER = {"sub": "ada", "email": "ada@example.org", "name": "Ada Lovelace"}
TIMEOUT_S = 120


@contextmanager
def oidc_provider(log: Path):
    """oidc-provider-mock on a free loopback port with one predefined user; yields its base URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port),
                             "--user-claims", json.dumps(USER)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("team") / "stripes"
    for i, cls in enumerate(["horizontal", "vertical"]):
        write_images(root / "train" / cls, i, 8, size=(64, 64), seed=31)
        write_images(root / "validation" / cls, i, 3, size=(64, 64), seed=32)
    return root


@pytest.fixture
def roots(tmp_path_factory) -> dict:
    """The server's allowed roots: this run's temporary folders (the dataset, A's new data directory)."""
    return {"TRANSFER_LAB_DATA_ROOTS": str(tmp_path_factory.getbasetemp())}


def test_sign_in_through_a_local_oidc_provider_and_start_a_run(tmp_path, stripes, screenshots, roots):
    require_chromium()
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    with oidc_provider(tmp_path / "oidc.log") as issuer:
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
            'client_id = "transfer-lab"\nclient_secret = "test-secret"\n'
            f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n')
        with streamlit_server(home, roots, args=("--secrets.files", str(secrets_file)), port=port) as (_, url, _, _), \
                chromium() as driver:
            driver.get(url)
            # signed out: only the sign-in screen, no page of the app
            wait_for(driver, lambda d: any("Sign in" in b.text for b in css(d, "button")), TIMEOUT_S, "the sign-in")
            wait_idle(driver)
            assert "sign in to use it" in text_of(driver) and not css(driver, '[data-testid="stSidebarNavLink"]')
            screenshot(driver, screenshots, "19_sign_in")
            click_button(driver, "Sign in")
            # the provider's own page, then back to the app
            wait_for(driver, lambda d: d.current_url.startswith(issuer) and css(d, 'button[value="ada"]'), TIMEOUT_S,
                     "the provider's authorization page")
            click(driver, css(driver, 'button[value="ada"]')[0])
            wait_for(driver, lambda d: "Signed in: Ada Lovelace (ada@example.org)" in text_of(d, "stSidebar"),
                     TIMEOUT_S, "the signed-in sidebar")
            wait_idle(driver)
            assert_clean(driver)
            driver.set_window_size(1400, 1500)  # the sidebar scrolls on its own: tall enough for the user
            time.sleep(1.0)
            driver.save_screenshot(str(screenshots / "19_signed_in_sidebar.png"))
            driver.set_window_size(1400, 1000)

            # the run this user starts carries their name
            scan_folder(driver, stripes)
            nav(driver, "Strategies")
            click_button(driver, "Train selected")
            wait_for(driver, lambda d: "Queued training: 1 run" in text_of(d), 60, "the launch message")
            store = RunStore(home / "runs")
            (run,) = store.list()
            assert run.config["started_by"] == "ada@example.org"
            nav(driver, "Training curves")
            wait_for(driver, lambda d: "Started by ada@example.org" in text_of(d), TIMEOUT_S, "who started the run")
            assert_clean(driver, errors_allowed=True)  # a run killed below may show as failed meanwhile
            jobs.cancel(run)  # queued: cancelled at once; running: asked to stop, then killed
            jobs.kill(run, reason="stopped by the test")

            # signing out ends it, at the provider too (its end-session page), then the sign-in screen again
            click_button(driver, "Sign out")

            def signed_out(d):
                if d.current_url.startswith(issuer):
                    for button in css(d, "button"):
                        if button.text == "End session":
                            button.click()
                    return False
                return any("Sign in" in b.text for b in css(d, "button"))

            wait_for(driver, signed_out, TIMEOUT_S, "signed out")
            assert "Signed in:" not in text_of(driver)


def test_two_sessions_keep_their_own_folders_and_backbone(tmp_path, stripes, screenshots, roots):
    """Without sign-in the app opens as before (no sign-in screen). Session A moves its data
    directory and backbone; session B's dataset, runs and backbone stay as they were."""
    require_chromium()
    home = tmp_path / "home"
    home.mkdir()
    old_run = RunStore(home / "runs").create({"strategy": "linear_probe", "seed": 3, "dataset": str(stripes)},
                                             name="before A moved")
    jobs.cancel(old_run)  # a finished run in the server's data directory, listed to every session there
    a_home = tmp_path / "a-home"
    with streamlit_server(home, roots) as (_, url, _, _), chromium() as a, chromium() as b:
        for d in (a, b):
            d.get(url)
            wait_for(d, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), TIMEOUT_S, "the home page")
            wait_idle(d)
            assert "Sign in" not in text_of(d) and "Signed in" not in text_of(d)
        scan_folder(b, stripes)
        pick_backbone(b, "MobileNetV2")

        # session A: its own data directory and backbone, through the Settings panel
        click(a, [e for e in css(a, '[data-testid="stSidebar"] summary') if "Settings" in e.text][0])
        field = '[data-testid="stSidebar"] input[aria-label="Data directory (this session)"]'
        wait_for(a, lambda d: css(d, field), 30, "the data directory field")
        box = css(a, field)[0]
        box.send_keys("\ue009a")  # Ctrl+A
        box.send_keys(f"{a_home}\n")
        wait_idle(a)
        click_button(a, "Apply")
        wait_for(a, lambda d: f"Data directory: {a_home}" in text_of(d, "stSidebar"), TIMEOUT_S, "A's data directory")
        wait_idle(a)
        assert_clean(a)
        assert "Server configuration" in text_of(a, "stSidebar") and "TRANSFER_LAB_DATA_ROOTS" in text_of(a, "stSidebar")
        a.set_window_size(1400, 2400)  # the sidebar scrolls on its own: tall enough for the whole panel
        time.sleep(1.0)
        a.save_screenshot(str(screenshots / "19_settings_panel.png"))
        a.set_window_size(1400, 1000)
        pick_backbone(a, "ResNet50")
        nav(a, "Strategies")
        assert "No runs yet" in text_of(a)  # A's new data directory has none

        # session B: nothing moved
        nav(b, "Strategies")
        body = text_of(b, "stSidebar")
        assert f"Data directory: {home}" in body and "Dataset: stripes" in body
        assert shown_backbone(b) == "MobileNetV2" and shown_backbone(a) == "ResNet50"
        assert "No runs yet" not in text_of(b)  # B still lists the server's runs
        nav(b, "Training curves")
        wait_for(b, lambda d: "before A moved" in text_of(d), TIMEOUT_S, "B's run")
        assert_clean(b)
        assert os.environ.get("TRANSFER_LAB_HOME") != str(a_home)
        assert (a_home / "runs").is_dir() and RunStore(a_home / "runs").list() == []  # A's pages used its folder
        assert [r.id for r in RunStore(home / "runs").list()] == [old_run.id]
