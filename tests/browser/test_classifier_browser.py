"""The Classifier page in headless Chromium: upload a cat photo from the shared
cats-vs-dogs set, the top-1 label (a cat class) is visible, Grad-CAM and the chart
render, no exception; a full-page screenshot is saved."""

from __future__ import annotations

import pytest

from tests.browser.ui import RADIO, assert_clean, click_text, css, screenshot, text_of, wait_for, wait_idle
from tests.helpers import CATS_VS_DOGS, SHARED_WEIGHTS

pytestmark = pytest.mark.browser

TIMEOUT_S = 420
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet 281-285


def test_upload_a_cat_photo_and_see_its_class(app_server, driver, screenshots):
    if not (SHARED_WEIGHTS / "efficientnet_lite0.keras").exists() or not CATS_VS_DOGS.is_dir():
        pytest.fail(f"shared weights or cats_vs_dogs missing under {SHARED_WEIGHTS.parent}")
    url, _, _ = app_server
    driver.get(f"{url}/classifier")
    wait_for(driver, lambda d: any(h.text == "Classifier" for h in css(d, "h1")), TIMEOUT_S, "the Classifier page")
    wait_idle(driver, TIMEOUT_S)
    # other browser tests may have finished runs in this app's data directory: pick ImageNet explicitly
    click_text(driver, RADIO, "ImageNet classifier")
    wait_idle(driver, TIMEOUT_S)
    wait_for(driver, lambda d: css(d, '[data-testid="stFileUploaderDropzoneInput"]'), TIMEOUT_S, "the uploader "
             "(the EfficientNet-Lite0 classifier loads first)")
    body = text_of(driver)
    assert "EfficientNet-Lite0" in body and "224 x 224" in body

    cat = sorted((CATS_VS_DOGS / "validation" / "cats").glob("*.jpg"))[0]
    css(driver, '[data-testid="stFileUploaderDropzoneInput"]')[0].send_keys(str(cat))
    wait_for(driver, lambda d: "→ top-1:" in text_of(d), TIMEOUT_S, "the prediction")
    wait_idle(driver, TIMEOUT_S)
    wait_for(driver, lambda d: len(css(d, '[data-testid="stImage"] img')) >= 2, 120, "the photo and Grad-CAM")

    line = next(m.text for m in css(driver, '[data-testid="stMarkdownContainer"]') if "→ top-1:" in m.text)
    label = line.split("top-1:", 1)[1].rsplit("(", 1)[0].strip()
    assert line.startswith(cat.name) and label in CAT_CLASSES, line
    text = text_of(driver)
    assert f"Grad-CAM for “{label}”" in text and "Latency" in text
    assert css(driver, '[data-testid="stPlotlyChart"]'), "top-k chart missing"
    assert_clean(driver)
    shot = screenshot(driver, screenshots, "classifier_cat", settle_s=2.0)
    assert shot.stat().st_size > 20_000
