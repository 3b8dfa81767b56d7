"""The Classifier page in headless Chromium: upload a cat photo from the shared
cats-vs-dogs set, the top-1 label (a cat class) is visible, Grad-CAM and the chart
render, no exception; a full-page screenshot is saved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import CATS_VS_DOGS, SHARED_WEIGHTS

pytestmark = pytest.mark.browser

TIMEOUT_S = 420
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet 281-285


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_for(driver, condition, timeout: float = TIMEOUT_S, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        lambda d: condition(d), message=f"timed out waiting for {what}")


def wait_idle(driver, timeout: float = TIMEOUT_S) -> None:
    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        wait_for(driver, lambda d: css(d, idle), timeout, "the script to finish")
        time.sleep(1.0)
        if css(driver, idle):
            return
    raise AssertionError("the app kept running")


def full_page_screenshot(driver, folder: Path, name: str) -> Path:
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]');"
        "return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight);")
    driver.set_window_size(1400, min(int(height) + 80, 14000))
    time.sleep(2.0)  # charts re-layout, images paint
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def test_upload_a_cat_photo_and_see_its_class(app_server, driver, screenshots):
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists() or not CATS_VS_DOGS.is_dir():
        pytest.fail(f"shared weights or cats_vs_dogs missing under {SHARED_WEIGHTS.parent}")
    url, _, _ = app_server
    driver.get(f"{url}/classifier")
    wait_for(driver, lambda d: any(h.text == "Classifier" for h in css(d, "h1")), what="the Classifier page")
    wait_idle(driver)
    # other browser tests may have finished runs in this app's data directory: pick ImageNet explicitly
    imagenet = [el for el in css(driver, '[data-testid="stRadio"] label') if "ImageNet classifier" in el.text]
    assert imagenet, "model choice missing"
    imagenet[0].click()
    wait_idle(driver)
    wait_for(driver, lambda d: css(d, '[data-testid="stFileUploaderDropzoneInput"]'), what="the uploader "
             "(the EfficientNet-Lite0 classifier loads first)")
    body = driver.find_element("css selector", '[data-testid="stApp"]').text
    assert "EfficientNet-Lite0" in body and "224 x 224" in body

    cat = sorted((CATS_VS_DOGS / "validation" / "cats").glob("*.jpg"))[0]
    css(driver, '[data-testid="stFileUploaderDropzoneInput"]')[0].send_keys(str(cat))
    wait_for(driver, lambda d: "→ top-1:" in d.find_element("css selector", '[data-testid="stApp"]').text,
             what="the prediction")
    wait_idle(driver)
    wait_for(driver, lambda d: len(css(d, '[data-testid="stImage"] img')) >= 2, 120, "the photo and Grad-CAM")

    line = next(m.text for m in css(driver, '[data-testid="stMarkdownContainer"]') if "→ top-1:" in m.text)
    label = line.split("top-1:", 1)[1].rsplit("(", 1)[0].strip()
    assert line.startswith(cat.name) and label in CAT_CLASSES, line
    text = driver.find_element("css selector", '[data-testid="stApp"]').text
    assert f"Grad-CAM for “{label}”" in text and "Latency" in text
    assert css(driver, '[data-testid="stPlotlyChart"]'), "top-k chart missing"
    assert not css(driver, '[data-testid="stException"]')
    assert not css(driver, '[data-testid="stAlertContentError"]')
    shot = full_page_screenshot(driver, screenshots, "classifier_cat")
    assert shot.stat().st_size > 20_000
