"""Training in a real browser: scan a small generated dataset, launch a feature-extraction
run from the Strategies page, watch it in the queue until it finishes, see it in the
comparison, then its curves and confusion matrix on the Curves page. Screenshots saved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.ui import (assert_clean, click_button, css, nav, one_split, scan_folder, screenshot, text_of, wait_for,
                              wait_idle)
from tests.helpers import SHARED_WEIGHTS, write_images

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


def test_train_a_strategy_and_study_the_run(app_server, driver, screenshots, small_dataset):
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    url, _, _ = app_server
    driver.get(url)
    wait_for(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), 120, "the home page")
    wait_idle(driver)

    # the Strategies page without a dataset says where to get one
    nav(driver, "Strategies")
    assert "Choose a dataset first" in text_of(driver)
    assert_clean(driver)

    # scan the generated folder on the Dataset page
    scan_folder(driver, small_dataset)

    # launch feature extraction with the page's defaults on the sidebar's backbone (EfficientNet-Lite0)
    nav(driver, "Strategies")
    body = text_of(driver)
    assert "stripes" in body and "EfficientNet-Lite0" in body
    one_split(driver)  # a small set: the page's default repeats over 5 splits
    click_button(driver, "Train selected")
    wait_for(driver, lambda d: "Queued training: 1 run" in text_of(d), 60, "the launch message")
    wait_for(driver, lambda d: css(d, '[data-testid="stProgress"]') or "No job queued" in text_of(d), 180,
             "live progress in the queue")
    if css(driver, '[data-testid="stProgress"]'):
        screenshot(driver, screenshots, "10_strategies_running")
    start = time.perf_counter()
    wait_for(driver, lambda d: "No job queued or running." in text_of(d) and css(d, ".js-plotly-plot"),
             TRAIN_TIMEOUT_S, "the run to finish and its charts")
    wait_idle(driver)
    print(f"\nrun finished {time.perf_counter() - start:.1f} s after the first progress")
    body = text_of(driver)
    assert "Accuracy vs time" in body and "failed" not in body
    assert len(css(driver, ".js-plotly-plot")) >= 2
    assert_clean(driver)
    screenshot(driver, screenshots, "11_strategies_done")

    # its curves, confusion matrix and worst predictions
    nav(driver, "Training curves")
    wait_for(driver, lambda d: len(css(d, ".js-plotly-plot")) >= 2, 120, "the curves and the confusion matrix")
    wait_idle(driver)
    body = text_of(driver)
    for expected in ("Feature extraction", "Validation accuracy", "Confusion matrix", "Per class",
                     "Worst validation predictions", "tensorboard --logdir"):
        assert expected in body, expected
    assert len(css(driver, '[data-testid="stImage"]')) >= 6  # the gallery
    assert_clean(driver)
    screenshot(driver, screenshots, "12_curves")
