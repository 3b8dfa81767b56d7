"""The app in a real browser: every page, a zip upload, charts, thumbnails, feature
maps, no exception; full-page screenshots and the time to first render."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import pytest

from tests.browser.ui import (RADIO, assert_clean, click_button, click_text, css, nav, nav_links, screenshot,
                              text_of, wait_for, wait_idle)
from tests.helpers import CATS_VS_DOGS, SHARED_WEIGHTS, write_images

pytestmark = pytest.mark.browser

PAGE_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def upload_zip(tmp_path_factory) -> Path:
    """A small dataset with a leak and an unreadable file, zipped with a wrapper folder."""
    base = tmp_path_factory.mktemp("upload")
    root = base / "flowers"
    firsts = []
    for i, cls in enumerate(["roses", "tulips", "daisies"]):
        firsts.append(write_images(root / "train" / cls, i, 14, size=(96 + 16 * i, 128), seed=11)[0])
        write_images(root / "validation" / cls, i, 4, size=(96, 128), seed=12)
    shutil.copy(firsts[0], root / "validation" / "roses" / "copied.png")
    (root / "train" / "tulips" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    archive = base / "flowers.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(base).as_posix())
    return archive


def test_first_render(driver, app_server, screenshots):  # browser first: not part of the time
    url, healthy_s, started = app_server
    t0 = time.perf_counter()
    driver.get(url)
    wait_for(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), 120, "the home page")
    now = time.perf_counter()
    print(f"\ntime to first render: {now - started:.1f} s from `streamlit run` "
          f"(server healthy after {healthy_s:.1f} s; page load to content {now - t0:.1f} s)")
    wait_idle(driver)
    assert "Start with the sample dataset" in text_of(driver)
    assert_clean(driver)
    screenshot(driver, screenshots, "01_home")


def test_zip_upload_dataset_page(app_server, driver, screenshots, upload_zip):
    nav(driver, "Dataset")
    click_text(driver, RADIO, "Upload a zip")
    wait_for(driver, lambda d: css(d, '[data-testid="stFileUploaderDropzoneInput"]'), 60, "the zip uploader")
    css(driver, '[data-testid="stFileUploaderDropzoneInput"]')[0].send_keys(str(upload_zip))
    wait_for(driver, lambda d: len(css(d, ".js-plotly-plot")) >= 4, PAGE_TIMEOUT_S, "the dataset charts")
    wait_idle(driver)
    assert len(css(driver, '[data-testid="stImage"]')) >= 12, "thumbnail grid missing"
    body = text_of(driver)
    assert "flowers" in body and "Usable images" in body
    assert "1 picture in both train and validation" in body
    assert "1 file could not be read" in body
    assert_clean(driver)
    screenshot(driver, screenshots, "02_dataset_zip")


def test_bad_zip_is_rejected(app_server, driver, screenshots, tmp_path):
    bad = tmp_path / "holiday.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    css(driver, '[data-testid="stFileUploaderDropzoneInput"]')[0].send_keys(str(bad))
    wait_for(driver, lambda d: css(d, '[data-testid="stAlertContentError"]'), 120, "the rejection")
    wait_idle(driver)
    error = css(driver, '[data-testid="stAlertContentError"]')[0].text
    assert "Zip rejected" in error and "Not a valid zip file" in error
    assert_clean(driver, errors_allowed=True)
    screenshot(driver, screenshots, "03_dataset_bad_zip")


def test_backbones_page(app_server, driver, screenshots):
    if not SHARED_WEIGHTS.is_dir():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    nav(driver, "Backbones")
    wait_for(driver, lambda d: css(d, '[data-testid="stDataFrame"]') and css(d, ".js-plotly-plot"),
             PAGE_TIMEOUT_S, "the registry table and chart")
    wait_for(driver, lambda d: "most active channels" in text_of(d), PAGE_TIMEOUT_S, "the feature maps")
    wait_idle(driver)
    body = text_of(driver)
    assert "Inside EfficientNet-Lite0" in body
    assert_clean(driver)
    screenshot(driver, screenshots, "04_backbones")

    click_button(driver, "Measure images/s")
    wait_for(driver, lambda d: "at 224 px, images/s" in text_of(d), PAGE_TIMEOUT_S, "the speed measurement")
    wait_idle(driver)
    assert_clean(driver)
    assert "tensorflow f32" in text_of(driver) and "openvino" in text_of(driver)  # engines side by side
    screenshot(driver, screenshots, "05_backbones_measured")


def test_sample_dataset_from_home(app_server, driver, screenshots):
    if not CATS_VS_DOGS.is_dir():
        pytest.fail(f"cats_vs_dogs missing at {CATS_VS_DOGS}")
    nav(driver, "Home")
    click_button(driver, "Start with the sample")
    wait_for(driver, lambda d: len(css(d, ".js-plotly-plot")) >= 4 and "cats_vs_dogs" in text_of(d),
             PAGE_TIMEOUT_S, "the scanned sample")
    wait_idle(driver)
    body = text_of(driver)
    assert "3,000" in body  # usable images
    assert_clean(driver)
    screenshot(driver, screenshots, "06_dataset_sample")


def test_every_page_opens(app_server, driver, screenshots):
    """Every registered page, including those added later, renders without an exception."""
    titles = list(nav_links(driver))
    assert {"Home", "Dataset", "Backbones"} <= set(titles)
    for title in titles:
        nav(driver, title)  # looks the links up again: each page switch redraws them
        assert_clean(driver, errors_allowed=True)
        screenshot(driver, screenshots, f"page_{title.lower().replace(' ', '_')}")
