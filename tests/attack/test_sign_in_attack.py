"""Sign-in bypass (issue 27, attack 5): with ``[auth]`` configured, a visitor forges Streamlit's
auth cookie (``_streamlit_user``, signed as Streamlit signs it:
``starlette_app_utils.create_signed_value(secret, "_streamlit_user", json)``) with the
``cookie_secret`` of ``.streamlit/secrets.toml.example``. On a server whose secret is that
example, the forged cookie signs nobody in: the app shows its refusal and no page. The control
(a server with a strong secret, the cookie forged with that secret) shows the forgery itself is
sound: there it does sign in, so the refusal above is the app's doing, not a broken cookie."""

from __future__ import annotations

import json
import secrets
import tomllib

import pytest
from streamlit.web.server.starlette.starlette_app_utils import create_signed_value

from core import serving
from tests.browser.conftest import _free_port, auth_secrets, chromium, require_chromium, streamlit_server
from tests.browser.ui import css, screenshot, text_of, wait_for, wait_idle
from tests.helpers import REPO

pytestmark = [pytest.mark.attack, pytest.mark.browser]

COOKIE = "_streamlit_user"
MALLORY = {"email": "mallory@example.org", "name": "Mallory", "sub": "mallory"}
TIMEOUT_S = 120


def example_secret() -> str:
    """The cookie_secret anyone can read in the repository's example secrets file."""
    example = tomllib.loads((REPO / ".streamlit" / "secrets.toml.example").read_text(encoding="utf-8"))
    return example["auth"]["cookie_secret"]


def visit_with_forged_cookie(home, tmp_path, cookie_secret: str, forged_with: str, shot: str | None, screenshots):
    """Serve the app with ``cookie_secret``; a visitor sets a cookie for Mallory signed with
    ``forged_with`` and opens it. Returns the page's text once it settled."""
    port = _free_port()
    issuer = f"http://127.0.0.1:{_free_port()}"  # no provider answers: nobody signs in the honest way
    secrets_file = auth_secrets(tmp_path / "secrets.toml", port, issuer, cookie_secret)
    with streamlit_server(home, args=("--secrets.files", str(secrets_file)), port=port) as (_, url, _, _), \
            chromium() as driver:
        driver.get(url)
        wait_for(driver, lambda d: css(d, "h1, [data-testid='stAlertContentError']"), TIMEOUT_S, "the first page")
        payload = json.dumps({"origin": url, "is_logged_in": True, **MALLORY})
        forged = create_signed_value(forged_with, COOKIE, payload).decode()
        driver.add_cookie({"name": COOKIE, "value": forged, "path": "/", "httpOnly": True})
        driver.get(url)
        wait_for(driver, lambda d: css(d, "h1, [data-testid='stAlertContentError']"), TIMEOUT_S, "the page")
        wait_idle(driver)
        if shot:
            screenshot(driver, screenshots, shot)
        return text_of(driver), bool(css(driver, '[data-testid="stSidebarNavLink"]'))


def test_a_cookie_forged_with_the_example_secret_signs_nobody_in(tmp_path, screenshots):
    """The example's cookie_secret copied as is: the forged cookie shows the refusal (how to make a
    secret), no "Signed in", no page of the app."""
    require_chromium()
    secret = example_secret()
    assert serving.weak_cookie_secret(secret)  # the app's own verdict on it
    home = tmp_path / "home"
    home.mkdir()
    text, pages = visit_with_forged_cookie(home, tmp_path, secret, secret, "attack_forged_cookie_refused", screenshots)
    assert "Sign-in is turned off" in text and "secrets.token_urlsafe(32)" in text, text[-1500:]
    assert "Signed in" not in text and "mallory" not in text.lower() and not pages


def test_control_the_same_forgery_signs_in_where_the_secret_is_known(tmp_path, screenshots):
    """Control for the test above: with a strong secret that the forger (here, the test) knows,
    the very same cookie does sign Mallory in, so the forgery is a real one."""
    require_chromium()
    secret = secrets.token_urlsafe(32)
    home = tmp_path / "home"
    home.mkdir()
    text, pages = visit_with_forged_cookie(home, tmp_path, secret, secret, None, screenshots)
    assert "Signed in: Mallory (mallory@example.org)" in text and pages, text[-1500:]
