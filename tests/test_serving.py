"""Who may reach a served app (core.serving): loopback without sign-in, real cookie secrets."""

from __future__ import annotations

import secrets
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from core import serving, settings
from tests.helpers import REPO


@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                               ("localhost", True), ("0.0.0.0", False), ("", False),
                                               (None, False), ("10.1.2.3", False), ("example.org", False)])
def test_loopback_addresses(address, loopback):
    assert serving.is_loopback(address) is loopback


def test_network_address_needs_the_exact_opt_in(monkeypatch):
    monkeypatch.delenv(settings.OPEN_WITHOUT_SIGN_IN_ENV, raising=False)
    assert serving.open_without_sign_in_refusal("127.0.0.1") is None
    assert "without sign-in" in serving.open_without_sign_in_refusal("0.0.0.0")
    monkeypatch.setenv(settings.OPEN_WITHOUT_SIGN_IN_ENV, "yes")  # a casual value is not the opt-in
    assert serving.open_without_sign_in_refusal("0.0.0.0") is not None
    monkeypatch.setenv(settings.OPEN_WITHOUT_SIGN_IN_ENV, settings.OPEN_WITHOUT_SIGN_IN_VALUE)
    assert serving.open_without_sign_in_refusal("0.0.0.0") is None


def test_the_example_secret_and_weak_ones_are_refused():
    example = tomllib.loads((REPO / ".streamlit" / "secrets.toml.example").read_text())["auth"]["cookie_secret"]
    for weak in (example, "", None, 12345, "short-secret", "a" * 64, "ab" * 40):
        assert "Sign-in is turned off" in serving.weak_cookie_secret(weak), weak
    assert serving.weak_cookie_secret(secrets.token_urlsafe(32)) is None


def test_the_app_refuses_a_network_address_without_sign_in(monkeypatch):
    from streamlit import config

    monkeypatch.delenv(settings.OPEN_WITHOUT_SIGN_IN_ENV, raising=False)
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    finally:
        config.set_option("server.address", before)
    assert any("without sign-in" in e.value for e in at.error)
    assert not at.sidebar.selectbox  # nothing else was drawn: the run stopped


def test_the_app_refuses_sign_in_with_the_example_secret(tmp_path, monkeypatch):
    example = (REPO / ".streamlit" / "secrets.toml.example").read_text()
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    at.secrets["auth"] = tomllib.loads(example)["auth"]
    at.run()
    assert any("placeholder" in e.value for e in at.error)
    assert not at.button  # no sign-in button: a forged cookie has nothing to sign in to
