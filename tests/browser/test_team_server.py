"""A team server, for real: sign-in through a local OpenID Connect provider (oidc-provider-mock
on 127.0.0.1, started here) with Chromium clicking through it, the run the signed-in user
starts recorded under their name (in their own workspace) and shown on the curves page; and
two sessions without sign-in (the app opens as before), both the one local user: an earlier
flat data directory migrated into the local workspace and listed to both, a read-only Settings
panel, each session keeping its own dataset and backbone. Two signed-in users' workspaces and
what each may change are tests/attack/test_team_attack.py's. Screenshots of the sign-in page,
the signed-in sidebar and the Settings panel."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from core import layout
from core.runs import jobs
from core.runs.store import RunStore
from tests.browser.conftest import _free_port, auth_secrets, chromium, oidc_provider, require_chromium, streamlit_server
from tests.browser.test_concurrent_sessions import pick_backbone, shown_backbone
from tests.browser.ui import (assert_clean, click, click_button, css, nav, one_split, scan_folder, screenshot, text_of,
                              wait_for, wait_idle)
from tests.helpers import SHARED_WEIGHTS, write_images

pytestmark = pytest.mark.browser

USER = {"sub": "ada", "email": "ada@example.org", "name": "Ada Lovelace"}
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("team") / "stripes"
    for i, cls in enumerate(["horizontal", "vertical"]):
        write_images(root / "train" / cls, i, 8, size=(64, 64), seed=31)
        write_images(root / "validation" / cls, i, 3, size=(64, 64), seed=32)
    return root


@pytest.fixture
def roots(tmp_path_factory) -> dict:
    """The server's allowed roots: this run's temporary folders (the dataset)."""
    return {"TRANSFER_LAB_DATA_ROOTS": str(tmp_path_factory.getbasetemp())}


def test_sign_in_through_a_local_oidc_provider_and_start_a_run(tmp_path, stripes, screenshots, roots):
    require_chromium()
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    with oidc_provider(tmp_path / "oidc.log", [USER]) as issuer:
        secrets_file = auth_secrets(tmp_path / "secrets.toml", port, issuer, secrets.token_urlsafe(32))
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
            one_split(driver)  # a small set: the page's default repeats over 5 splits
            click_button(driver, "Train selected")
            wait_for(driver, lambda d: "Queued training: 1 run" in text_of(d), 60, "the launch message")
            store = RunStore(home / "users" / layout.user_id("ada@example.org") / "runs")  # ada's workspace
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


def test_two_sessions_without_sign_in_share_the_local_workspace_and_keep_their_own_choices(
        tmp_path, stripes, screenshots, roots):
    """Without sign-in the app opens as before (no sign-in screen) and every session is the one
    local user: a run of an earlier flat data directory is migrated into users/local and listed to
    both sessions; the Settings panel is read-only (no visitor moves the data directory any more);
    each session keeps its own dataset and backbone while the other changes its own."""
    require_chromium()
    home = tmp_path / "home"
    old_run = RunStore(home / "runs").create({"strategy": "linear_probe", "seed": 3, "dataset": str(stripes)},
                                             name="before the new layout")
    jobs.cancel(old_run)  # a finished run of the flat layout (runs/ at the top of the data directory)
    with streamlit_server(home, roots) as (_, url, _, _), chromium() as a, chromium() as b:
        for d in (a, b):
            d.get(url)
            wait_for(d, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), TIMEOUT_S, "the home page")
            wait_idle(d)
            assert "Sign in" not in text_of(d) and "Signed in" not in text_of(d)
            local = home / "users" / "local"
            assert f"Your workspace: {local}" in text_of(d, "stSidebar")
        scan_folder(b, stripes)
        pick_backbone(b, "MobileNetV2")

        # session A: the Settings panel shows the server's configuration and offers no folder to type
        click(a, [e for e in css(a, '[data-testid="stSidebar"] summary') if "Settings" in e.text][0])
        wait_for(a, lambda d: "Server configuration" in text_of(d, "stSidebar"), 30, "the Settings panel")
        wait_idle(a)
        assert_clean(a)
        sidebar = text_of(a, "stSidebar")
        assert "TRANSFER_LAB_DATA_ROOTS" in sidebar and "TRANSFER_LAB_HOME" in sidebar and str(home) in sidebar
        assert not css(a, '[data-testid="stSidebar"] [data-testid="stExpanderDetails"] input'), \
            "the Settings panel offers a field to type into"
        a.set_window_size(1400, 2400)  # the sidebar scrolls on its own: tall enough for the whole panel
        time.sleep(1.0)
        a.save_screenshot(str(screenshots / "19_settings_panel.png"))
        a.set_window_size(1400, 1000)
        pick_backbone(a, "ResNet50")

        # both list the migrated run; B's dataset and backbone are still B's, A's still A's
        for d in (a, b):
            nav(d, "Training curves")
            wait_for(d, lambda d: "before the new layout" in text_of(d), TIMEOUT_S, "the migrated run")
            assert_clean(d)
        assert "Dataset: stripes" in text_of(b, "stSidebar") and "Dataset: none yet" in text_of(a, "stSidebar")
        assert shown_backbone(b) == "MobileNetV2" and shown_backbone(a) == "ResNet50"
    assert (home / "users" / "local" / "runs" / old_run.id / "config.json").is_file()  # moved, not copied
    assert not (home / "runs").exists()
