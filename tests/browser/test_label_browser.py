"""The Label and Explore pages in a real browser: build a two-class dataset by uploading
photos, auto-label more photos, accept them, and open the feature map. Screenshots are
saved in the folder the ``screenshots`` fixture prints."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.ui import (RADIO, assert_clean, click, click_button, click_text, css, nav, screenshot,
                              screenshot_on_failure, text_of, wait_for, wait_idle)
from tests.helpers import CATS_VS_DOGS, SHARED_WEIGHTS

pytestmark = pytest.mark.browser

DATASET = "pets_browser"
LONG_S = 600  # model loads and extraction on a shared 2-core CPU


def photos(split: str, cls: str, n: int, skip: int = 0) -> list[Path]:
    return sorted((CATS_VS_DOGS / split / cls).iterdir())[skip:skip + n]


def widget(driver, testid: str, label: str):
    """The widget of that kind whose label contains ``label``, once drawn."""
    return wait_for(driver, lambda d: next((w for w in css(d, f'[data-testid="{testid}"]') if label in w.text), None),
                    60, f"the {testid} '{label}'")


def choose(driver, label: str, option: str, exact: bool = True) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (not ``exact``: the first option containing it)."""
    box = widget(driver, "stSelectbox", label)
    opener = box.find_elements("css selector", 'button[aria-label="Open"]') or box.find_elements("css selector", "input")
    click(driver, opener[0])
    item = wait_for(driver, lambda d: next((o for o in css(d, '[role="option"]')
                                            if (o.text.strip() == option if exact else option in o.text)), None),
                    30, f"the option '{option}'")
    item.click()
    wait_idle(driver)


def type_into(driver, label: str, text: str) -> None:
    field = widget(driver, "stTextInput", label).find_element("css selector", "input")
    field.clear()
    field.send_keys(text)


def upload(driver, label: str, files: list[Path]) -> None:
    box = widget(driver, "stFileUploader", label)
    box.find_element("css selector", '[data-testid="stFileUploaderDropzoneInput"]').send_keys(
        "\n".join(str(f) for f in files))


def test_build_autolabel_and_explore(app_server, app_home, driver, screenshots):
    with screenshot_on_failure(driver, screenshots, "label_failure"):
        _build_autolabel_and_explore(app_server, app_home, driver, screenshots)


def _build_autolabel_and_explore(app_server, app_home, driver, screenshots):
    if not (CATS_VS_DOGS.is_dir() and SHARED_WEIGHTS.is_dir()):
        pytest.fail(f"shared assets missing at {CATS_VS_DOGS} / {SHARED_WEIGHTS}")
    url, _, _ = app_server
    if not driver.current_url.startswith(url):
        driver.get(url)
        wait_idle(driver)
    nav(driver, "Label")
    assert_clean(driver)
    backbone = widget(driver, "stSelectbox", "Backbone")
    if "EfficientNet-Lite0" not in backbone.text:  # an earlier test may have picked another network
        choose(driver, "Backbone", "EfficientNet-Lite0", exact=False)

    # -- create a two-class dataset
    if "Name of the new dataset" not in text_of(driver):
        choose(driver, "Dataset", "➕ New dataset…")
    type_into(driver, "Name of the new dataset", DATASET)
    type_into(driver, "Classes, separated by commas", "cats, dogs")
    click_button(driver, "Create dataset")
    wait_for(driver, lambda d: f"Created dataset '{DATASET}'" in text_of(d), 120, "the new dataset")
    wait_idle(driver)

    # -- add five photos to each class by uploading them
    upload(driver, "Photos (JPEG, PNG", photos("train", "cats", 5))
    click_button(driver, "Add 5 photos to 'cats'")
    wait_for(driver, lambda d: "Added to 'cats': 5 photos" in text_of(d), 120, "the cats")
    wait_idle(driver)
    choose(driver, "To class", "dogs")
    upload(driver, "Photos (JPEG, PNG", photos("train", "dogs", 5))
    click_button(driver, "Add 5 photos to 'dogs'")
    wait_for(driver, lambda d: "Added to 'dogs': 5 photos" in text_of(d), 120, "the dogs")
    wait_idle(driver)
    assert_clean(driver)
    body = text_of(driver)
    assert "cats (5)" in body and "dogs (5)" in body
    screenshot(driver, screenshots, "label_01_dataset_built")

    # -- auto-label twelve more photos (both methods) and accept them
    upload(driver, "Unlabelled photos", photos("validation", "cats", 6) + photos("validation", "dogs", 6))
    click_button(driver, "Use these 12 photos")
    wait_for(driver, lambda d: "12 photos to label" in text_of(d), 120, "the unlabelled photos")
    wait_idle(driver)
    click_text(driver, RADIO, "Compare both")
    wait_idle(driver)
    assert "tabby" in text_of(driver)  # the suggested ImageNet classes behind 'cats'
    click_button(driver, "Suggest labels")
    wait_for(driver, lambda d: "Suggestions for 12 photos" in text_of(d), LONG_S, "the suggestions")
    wait_idle(driver, LONG_S)
    assert_clean(driver)
    screenshot(driver, screenshots, "label_02_suggestions")

    from selenium.webdriver.common.keys import Keys

    thumb = widget(driver, "stSlider", "Accept suggestions").find_element("css selector", 'input[type="range"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", thumb)
    thumb.send_keys(Keys.HOME)  # threshold 0: accept every suggestion
    wait_for(driver, lambda d: "Add 12 labelled photos" in text_of(d), 60, "all twelve accepted")
    wait_idle(driver)
    click_button(driver, "Add 12 labelled photos")
    wait_for(driver, lambda d: "Added 12 photos" in text_of(d), 120, "the accepted photos")
    wait_idle(driver)
    folder = app_home / "users" / "local" / "datasets" / DATASET  # the local user's workspace
    counts = {c.name: sum(1 for f in c.iterdir() if f.is_file()) for c in folder.iterdir() if c.is_dir()}
    assert sum(counts.values()) == 22 and set(counts) == {"cats", "dogs"}, counts
    assert_clean(driver)
    screenshot(driver, screenshots, "label_03_accepted")

    # -- the feature map of the new dataset
    click_button(driver, "Use this dataset on every page")
    wait_for(driver, lambda d: "This is the dataset every page uses" in text_of(d), 120, "the dataset in use")
    wait_idle(driver)
    nav(driver, "Explore features")
    click_button(driver, "Extract features")
    wait_for(driver, lambda d: css(d, ".js-plotly-plot") and "PCA of 22 photos" in text_of(d), LONG_S,
             "the feature map")
    wait_idle(driver)
    assert_clean(driver)
    screenshot(driver, screenshots, "label_04_feature_map_pca")

    click_text(driver, '[data-testid="stButtonGroup"] button', "t-SNE")
    wait_for(driver, lambda d: "t-SNE of 22 photos" in text_of(d), 180, "the t-SNE map")
    wait_idle(driver)
    assert_clean(driver)
    screenshot(driver, screenshots, "label_05_feature_map_tsne")

    click_text(driver, '[role="tab"]', "Possibly mislabelled")
    time.sleep(1.0)
    assert "never saw that photo" in text_of(driver)
    screenshot(driver, screenshots, "label_06_mislabelled")

    # -- how well each backbone separates these 22 photos (every offline backbone + a random baseline)
    click_text(driver, '[role="tab"]', "Separability")
    time.sleep(1.0)
    click_button(driver, "Measure separability")
    wait_for(driver, lambda d: "Best separated by" in text_of(d), LONG_S, "the separability table")
    wait_idle(driver, LONG_S)
    assert_clean(driver)
    body = text_of(driver)
    assert "EfficientNet-Lite2" in body and "random" in body
    screenshot(driver, screenshots, "label_07_separability")
