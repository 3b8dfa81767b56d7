"""The strategy advisor on the Dataset page in a real browser, on real photos with the real
weights: stopped at its first step it keeps nothing and offers the button again. (Its answer,
chart and table are pinned by the AppTest in tests/test_app_dataset.py.) Screenshot saved."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.ui import (BUTTONS, ERRORS, assert_clean, click, css, scan_folder, screenshot,
                              screenshot_on_failure, text_of, wait_for, wait_idle)
from tests.helpers import CATS_VS_DOGS, SHARED_WEIGHTS

pytestmark = pytest.mark.browser

ADVISE_TIMEOUT_S = 420  # model loads and extraction on a shared 2-core CPU
STEP = re.compile(r"Step \d+ of \d+")
STOPPED = "The advisor was stopped; nothing it measured was kept"
ASK, STOP = "Ask the advisor", "Stop the advisor"


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    """Real photos: 10 train and 3 validation cats and dogs, copied from cats_vs_dogs."""
    if not CATS_VS_DOGS.is_dir() or not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights or cats_vs_dogs missing under {SHARED_WEIGHTS.parent}")
    root = tmp_path_factory.mktemp("browser_advisor") / "pets_advisor"
    for split, n in (("train", 10), ("validation", 3)):
        for cls in ("cats", "dogs"):
            (root / split / cls).mkdir(parents=True)
            for photo in sorted((CATS_VS_DOGS / split / cls).glob("*.jpg"))[:n]:
                shutil.copy(photo, root / split / cls / photo.name)
    return root


def no_error(driver) -> None:
    """Fail at once on an exception or an st.error box instead of waiting out a timeout."""
    found = css(driver, ERRORS)
    if found:
        raise AssertionError(f"error on the page: {found[0].text}")


def until(driver, condition, timeout: float, what: str):
    """``wait_for`` that fails fast on an error box."""
    def check(d):
        no_error(d)
        return condition(d)

    return wait_for(driver, check, timeout, what)


def buttons(driver, label: str) -> list:
    return [b for b in css(driver, BUTTONS) if label in b.text]


def press(driver, label: str, timeout: float = 120) -> None:
    """Click the enabled button ``label`` once it is drawn (failing fast on an error box)."""
    def attempt(d):
        found = [b for b in buttons(d, label) if b.is_enabled()]
        if found:
            click(d, found[0])
        return bool(found)

    until(driver, attempt, timeout, f"'{label}' to click")


def advisor_text(driver) -> str:
    """The main area's text from the advisor's header down."""
    body = text_of(driver, "stMain")
    return body[body.find("Strategy advisor"):] if "Strategy advisor" in body else ""


def on_the_dataset_page(driver, url: str, folder: Path) -> None:
    """The Dataset page with ``folder`` as this session's dataset, scanning it unless it already is."""
    if not driver.current_url.startswith(url):
        driver.get(url)
        wait_for(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), 120, "the home page")
        wait_idle(driver)
    if f"Dataset: {folder.name}" in text_of(driver, "stSidebar") and "Strategy advisor" in text_of(driver, "stMain"):
        return
    scan_folder(driver, folder)
    until(driver, lambda d: buttons(d, ASK) or "Recommended:" in advisor_text(d), 120, "the advisor panel")
    assert_clean(driver)


def test_stop_the_advisor(app_server, driver, screenshots, pets):
    with screenshot_on_failure(driver, screenshots, "advisor_stop_failure"):
        _stop_the_advisor(app_server, driver, screenshots, pets)


def _stop_the_advisor(app_server, driver, screenshots, pets):
    url, _, _ = app_server
    on_the_dataset_page(driver, url, pets)
    assert "Recommended:" not in advisor_text(driver), "advice before anyone asked"
    press(driver, ASK)
    until(driver, lambda d: STEP.search(advisor_text(d)) and buttons(d, STOP), ADVISE_TIMEOUT_S,
          "the advisor's first step and its Stop button")
    shown = STEP.search(advisor_text(driver))
    print(f"\nstopping at: {shown.group(0) if shown else '?'}")
    press(driver, STOP, timeout=30)
    def stopped(d):
        text = advisor_text(d)
        assert "Recommended:" not in text, "the advisor went on after Stop and recommended"
        return STOPPED in text and buttons(d, ASK)

    until(driver, stopped, ADVISE_TIMEOUT_S, "the stopped message and the Ask button")
    wait_idle(driver)
    time.sleep(3)  # an advisor that kept running would redraw the page with its answer
    wait_idle(driver)
    text = advisor_text(driver)
    assert STOPPED in text, text
    assert "Recommended:" not in text, "the advisor went on after Stop"
    assert not STEP.search(text) and not buttons(driver, STOP), "the progress stayed after Stop"
    assert buttons(driver, ASK), "no Ask button after Stop"
    assert_clean(driver)
    screenshot(driver, screenshots, "advisor_01_stopped")
