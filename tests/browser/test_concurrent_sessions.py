"""Five browser sessions on one app at once: each picks its own backbone (and two their
own dataset) and keeps it while the others change theirs; two of them start a training
run at the same moment, both runs finish through the shared run store with distinct ids
and readable folders, and a third session sees both. A screenshot per session."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.browser.conftest import chromium
from tests.browser.test_browser import screenshot
from tests.conftest import SHARED_WEIGHTS, write_images

pytestmark = pytest.mark.browser

# One per session; sessions 0 and 1 train on theirs, so those two have weights offline.
LITE = "EfficientNet-Lite{} (ImageNet-1k)"
BACKBONES = [LITE.format(0), LITE.format(1), LITE.format(2), "MobileNetV2", "ResNet50"]  # as the sidebar shows them
REGISTRY_NAMES = {LITE.format(0): "efficientnet_lite0", LITE.format(1): "efficientnet_lite1"}
TRAINERS = (0, 1)
VIEWER = 2
TIMEOUT_S = 120
TRAIN_TIMEOUT_S = 360
SIDEBAR_BACKBONE = '[data-testid="stSidebar"] input[aria-label="Backbone"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def until(driver, condition, timeout: float = TIMEOUT_S, what: str = ""):
    """WebDriverWait that treats elements Streamlit re-rendered meanwhile as "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        condition, message=f"timed out waiting for {what}")


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def app_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stApp"]').text


def sidebar_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text


def idle(driver, timeout: float = TIMEOUT_S) -> None:
    """Until the script has stopped running and stays stopped for a second."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        until(driver, lambda d: css(d, IDLE), timeout, "the script to finish")
        time.sleep(1.0)
        if css(driver, IDLE):
            return
    raise AssertionError("the app kept running")


def assert_clean(driver) -> None:
    for selector in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        found = css(driver, selector)
        assert not found, found[0].text


def shown_backbone(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, SIDEBAR_BACKBONE).get_attribute("value").removeprefix("✓ ").strip()


def pick_backbone(driver, name: str) -> None:
    """Type into the sidebar's backbone box and click the option of exactly that name."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def attempt(d):
        box = d.find_element(By.CSS_SELECTOR, SIDEBAR_BACKBONE)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(name)
        exact = [o for o in css(d, '[role="option"]') if o.text.removeprefix("✓ ").strip() == name]
        if exact:
            exact[0].click()
        return bool(exact)

    until(driver, attempt, 60, f"the backbone option {name}")
    until(driver, lambda d: shown_backbone(d) == name, TIMEOUT_S, f"{name} in the sidebar")
    idle(driver)


def go(driver, title: str) -> None:
    """Switch page through the sidebar link (keeps the session's state)."""
    def click(d):
        links = [a for a in css(d, '[data-testid="stSidebarNavLink"]') if a.text.strip().splitlines()[-1] == title]
        if links:
            links[0].click()
        return bool(links)

    until(driver, click, 60, f"the {title} link")
    until(driver, lambda d: any(h.text == title for h in css(d, "h1")), TIMEOUT_S, f"the {title} page")
    idle(driver)


def click_text(driver, selector: str, label: str) -> None:
    """Click the first element matching ``selector`` whose text contains ``label``."""
    def click(d):
        found = [el for el in css(d, selector) if label in el.text]
        if found:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", found[0])
            found[0].click()
        return bool(found)

    until(driver, click, 60, f"'{label}' to click")


def click_button(driver, label: str) -> None:
    click_text(driver, '[data-testid="stButton"] button', label)


def scan_folder(driver, folder: Path) -> None:
    go(driver, "Dataset")
    click_text(driver, '[data-testid="stRadio"] label', "Local folder")
    field = 'input[aria-label="Folder path on this machine"]'
    until(driver, lambda d: css(d, field), 60, "the folder input")
    idle(driver)
    until(driver, lambda d: css(d, field)[0].send_keys(str(folder) + "\n") or True, 30, "typing the folder")
    idle(driver)
    click_button(driver, "Scan folder")
    until(driver, lambda d: "Usable images" in app_text(d) and f"Dataset: {folder.name}" in sidebar_text(d),
          TIMEOUT_S, f"the scan of {folder.name}")
    idle(driver)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[Path]:
    """One small generated dataset per training session: 2 classes, 12 train + 4 validation each."""
    base = tmp_path_factory.mktemp("concurrent")
    out = []
    for n in TRAINERS:
        root = base / f"session{n}_stripes"
        for i, cls in enumerate(["horizontal", "vertical"]):
            write_images(root / "train" / cls, i, 12, size=(64, 64), seed=40 + n)
            write_images(root / "validation" / cls, i, 4, size=(64, 64), seed=50 + n)
        out.append(root)
    return out


@pytest.fixture(scope="module")
def browsers():
    """Five Chromium instances, each with its own fresh profile: five independent app sessions."""
    with ExitStack() as stack:
        yield [stack.enter_context(chromium()) for _ in BACKBONES]


def test_five_sessions_keep_their_own_selections_and_share_runs(app_server, app_home, browsers, datasets,
                                                                 screenshots):
    if not (SHARED_WEIGHTS / "efficientnet_lite1.keras").exists():
        pytest.fail(f"shared weights missing at {SHARED_WEIGHTS}")
    url, _, _ = app_server
    started = time.perf_counter()
    for driver in browsers:
        driver.get(url)
    for driver in browsers:
        until(driver, lambda d: css(d, SIDEBAR_BACKBONE) and any(h.text == "Transfer Lab" for h in css(d, "h1")),
              TIMEOUT_S, "the home page and its sidebar")
        idle(driver)

    # every session picks its own backbone, one after the other
    for driver, backbone in zip(browsers, BACKBONES):
        pick_backbone(driver, backbone)
    # the two trainers each scan their own dataset
    for n, folder in zip(TRAINERS, datasets):
        scan_folder(browsers[n], folder)

    def check_own_selections() -> None:
        for n, (driver, backbone) in enumerate(zip(browsers, BACKBONES)):
            assert shown_backbone(driver) == backbone, f"session {n} lost its backbone"
            expected = f"Dataset: {datasets[n].name}" if n in TRAINERS else "Dataset: none yet"
            assert expected in sidebar_text(driver), f"session {n}: {sidebar_text(driver)}"

    check_own_selections()

    # both trainers open Strategies (their own dataset and backbone) and press Train at the same moment
    for n in TRAINERS:
        go(browsers[n], "Strategies")
        caption = app_text(browsers[n])
        assert datasets[n].name in caption and BACKBONES[n] in caption, caption
    from selenium.webdriver.common.keys import Keys

    from core.runs import RunStore

    store = RunStore(app_home / "runs")
    roots = {str(folder): n for n, folder in zip(TRAINERS, datasets)}

    def mine():
        return [r for r in store.list() if r.config.get("dataset") in roots]

    for n in TRAINERS:
        click_button(browsers[n], "Train selected")
    launched = until(browsers[0], lambda d: len(mine()) == 2 and mine(), 60, "both runs in the run store")
    # one queue for everyone: each trainer's queue panel lists its own run and the other session's
    for n in TRAINERS:
        until(browsers[n], lambda d: all(r.id in app_text(d) for r in launched), 60, f"both runs in session {n}'s queue")

    # both runs go through the queue (one job at a time) and finish
    deadline = time.perf_counter() + TRAIN_TIMEOUT_S
    while time.perf_counter() < deadline:
        runs = mine()
        if len(runs) == 2 and all(r.status()["state"] in ("done", "failed", "cancelled") for r in runs):
            break
        time.sleep(2)
    runs = mine()
    states = {r.id: (r.status()["state"], r.status().get("reason")) for r in runs}
    assert len(runs) == 2 and all(s == "done" for s, _ in states.values()), states
    assert len({r.id for r in runs}) == 2 and len({r.dir for r in runs}) == 2
    for run in runs:  # each run has the session's own dataset and backbone, in readable files
        n = roots[run.config["dataset"]]
        config = json.loads((run.dir / "config.json").read_text())
        assert config["backbone"] == REGISTRY_NAMES[BACKBONES[n]] and config["strategy"] == "feature_extraction"
        assert json.loads((run.dir / "status.json").read_text())["state"] == "done"
        assert 0.0 <= json.loads((run.dir / "metrics.json").read_text())["val_accuracy"] <= 1.0
        assert not run.history().empty and run.model_path.stat().st_size > 0

    for n in TRAINERS:  # the trainers' queues empty out by themselves (the panel refreshes)
        until(browsers[n], lambda d: "No job queued or running." in app_text(d), TIMEOUT_S, f"session {n}'s queue")
        idle(browsers[n])
        assert_clean(browsers[n])

    # a third session lists both finished runs on the Training curves page
    viewer = browsers[VIEWER]
    go(viewer, "Training curves")
    box = until(viewer, lambda d: css(d, '[data-testid="stMultiSelect"] input'), TIMEOUT_S, "the Runs picker")[0]
    box.click()
    listed = until(viewer, lambda d: [o.text for o in css(d, '[role="option"]')] or None, 30, "the run options")
    listed += [el.text for el in css(viewer, '[data-testid="stMultiSelect"]')]  # the chips already selected
    for run in runs:
        assert any(run.id[-4:] in text and "done" in text for text in listed), (run.id, listed)
    box.send_keys(Keys.ESCAPE)  # close the list
    idle(viewer)
    assert_clean(viewer)

    # after all that, every session still shows its own choices
    check_own_selections()
    elapsed = time.perf_counter() - started
    for n, driver in enumerate(browsers):
        screenshot(driver, screenshots, f"concurrent_session_{n + 1}")
    print(f"\n5 sessions, 2 runs ({', '.join(r.id for r in runs)}): {elapsed:.0f} s")
