"""Training in a real browser: scan a small generated dataset, launch a feature-extraction
run from the Strategies page, watch it in the queue until it finishes, see it in the
comparison, then its curves and confusion matrix on the Curves page. Screenshots saved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.test_browser import assert_clean, css, nav_links, screenshot, text_of, wait_for, wait_idle
from tests.conftest import SHARED_WEIGHTS, write_images

pytestmark = pytest.mark.browser

TRAIN_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """Two classes of generated 64 px pictures: 16 train and 6 validation each."""
    root = tmp_path_factory.mktemp("browser_train") / "stripes"
    for i, cls in enumerate(["horizontal", "vertical"]):
        write_images(root / "train" / cls, i, 16, size=(64, 64), seed=21)
        write_images(root / "validation" / cls, i, 6, size=(64, 64), seed=22)
    return root


def retry(action, tries: int = 10):
    """Run a find-and-click again when Streamlit re-rendered the element meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(tries):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def until(driver, condition, timeout: float, what: str):
    """``wait_for`` that treats an element re-rendered under our feet as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException

    def safe(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False

    return wait_for(driver, safe, timeout, what)


def go(driver, label: str) -> None:
    """Switch page through the sidebar (the session, and its dataset, stay)."""
    retry(lambda: nav_links(driver)[label].click())
    until(driver, lambda d: any(h.text == label for h in css(d, "h1")), 60, f"the {label} page")
    wait_idle(driver)


def click_button(driver, label: str) -> None:
    def click():
        buttons = [b for b in css(driver, '[data-testid="stButton"] button') if label in b.text]
        assert buttons, f"no button '{label}'"
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", buttons[0])
        buttons[0].click()

    retry(click)


def choose_radio(driver, label: str) -> None:
    retry(lambda: next(el for el in css(driver, '[data-testid="stRadio"] label') if label in el.text).click())


def test_train_a_strategy_and_study_the_run(app_server, driver, screenshots, small_dataset):
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    url, _, _ = app_server
    driver.get(url)
    until(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), 120, "the home page")
    wait_idle(driver)

    # the Strategies page without a dataset says where to get one
    go(driver, "Strategies")
    assert "Choose a dataset first" in retry(lambda: text_of(driver))
    assert_clean(driver)

    # scan the generated folder on the Dataset page
    go(driver, "Dataset")
    choose_radio(driver, "Local folder")
    folder_input = 'input[aria-label="Folder path on this machine"]'
    until(driver, lambda d: css(d, folder_input), 60, "the folder input")
    wait_idle(driver)
    retry(lambda: css(driver, folder_input)[0].send_keys(str(small_dataset) + "\n"))
    wait_idle(driver)
    click_button(driver, "Scan folder")
    until(driver, lambda d: "Usable images" in text_of(d) and "stripes" in text_of(d), 120, "the scan")
    wait_idle(driver)

    # launch feature extraction with the page's defaults on the sidebar's backbone (EfficientNet-Lite0)
    go(driver, "Strategies")
    body = retry(lambda: text_of(driver))
    assert "stripes" in body and "EfficientNet-Lite0" in body
    click_button(driver, "Train selected")
    until(driver, lambda d: "Queued training: 1 run" in text_of(d), 60, "the launch message")
    until(driver, lambda d: css(d, '[data-testid="stProgress"]') or "No job queued" in text_of(d), 180,
             "live progress in the queue")
    if css(driver, '[data-testid="stProgress"]'):
        screenshot(driver, screenshots, "10_strategies_running")
    start = time.perf_counter()
    until(driver, lambda d: "No job queued or running." in text_of(d) and css(d, ".js-plotly-plot"),
             TRAIN_TIMEOUT_S, "the run to finish and its charts")
    wait_idle(driver)
    print(f"\nrun finished {time.perf_counter() - start:.1f} s after the first progress")
    body = retry(lambda: text_of(driver))
    assert "Accuracy vs time" in body and "failed" not in body
    assert len(css(driver, ".js-plotly-plot")) >= 2
    assert_clean(driver)
    screenshot(driver, screenshots, "11_strategies_done")

    # its curves, confusion matrix and worst predictions
    go(driver, "Training curves")
    until(driver, lambda d: len(css(d, ".js-plotly-plot")) >= 2, 120, "the curves and the confusion matrix")
    wait_idle(driver)
    body = retry(lambda: text_of(driver))
    for expected in ("Feature extraction", "Validation accuracy", "Confusion matrix", "Per class",
                     "Worst validation predictions", "tensorboard --logdir"):
        assert expected in body, expected
    assert len(css(driver, '[data-testid="stImage"]')) >= 6  # the gallery
    assert_clean(driver)
    screenshot(driver, screenshots, "12_curves")
