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
from tests.browser.ui import assert_clean, click_button, css, nav, one_split, scan_folder, screenshot, text_of, wait_for, wait_idle
from tests.helpers import SHARED_WEIGHTS, write_images

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


def shown_backbone(driver) -> str:
    return driver.find_element("css selector", SIDEBAR_BACKBONE).get_attribute("value").removeprefix("✓ ").strip()


def pick_backbone(driver, name: str) -> None:
    """Type into the sidebar's backbone box and click the option of exactly that name."""
    from selenium.webdriver.common.keys import Keys

    def attempt(d):
        box = d.find_element("css selector", SIDEBAR_BACKBONE)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(name)
        exact = [o for o in css(d, '[role="option"]') if o.text.removeprefix("✓ ").strip() == name]
        if exact:
            exact[0].click()
        return bool(exact)

    wait_for(driver, attempt, 60, f"the backbone option {name}")
    wait_for(driver, lambda d: shown_backbone(d) == name, TIMEOUT_S, f"{name} in the sidebar")
    wait_idle(driver, TIMEOUT_S)


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
        wait_for(driver, lambda d: css(d, SIDEBAR_BACKBONE) and any(h.text == "Transfer Lab" for h in css(d, "h1")),
                 TIMEOUT_S, "the home page and its sidebar")
        wait_idle(driver, TIMEOUT_S)

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
            sidebar = text_of(driver, "stSidebar")
            assert expected in sidebar, f"session {n}: {sidebar}"

    check_own_selections()

    # both trainers open Strategies (their own dataset and backbone) and press Train at the same moment
    for n in TRAINERS:
        nav(browsers[n], "Strategies")
        caption = text_of(browsers[n])
        assert datasets[n].name in caption and BACKBONES[n] in caption, caption
        one_split(browsers[n])  # small sets: the page's default repeats over 5 splits
    from selenium.webdriver.common.keys import Keys

    from core.runs.store import RunStore

    store = RunStore(app_home / "users" / "local" / "runs")  # without sign-in every session is the local user
    roots = {str(folder): n for n, folder in zip(TRAINERS, datasets)}

    def mine():
        return [r for r in store.list() if r.config.get("dataset") in roots]

    for n in TRAINERS:
        click_button(browsers[n], "Train selected")
    launched = wait_for(browsers[0], lambda d: len(mine()) == 2 and mine(), 60, "both runs in the run store")
    # one queue for everyone: each trainer's queue panel lists its own run and the other session's
    for n in TRAINERS:
        wait_for(browsers[n], lambda d: all(r.id in text_of(d) for r in launched), 60,
                 f"both runs in session {n}'s queue")

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
        wait_for(browsers[n], lambda d: "No job queued or running." in text_of(d), TIMEOUT_S, f"session {n}'s queue")
        wait_idle(browsers[n], TIMEOUT_S)
        assert_clean(browsers[n])

    # a third session lists both finished runs on the Training curves page
    viewer = browsers[VIEWER]
    nav(viewer, "Training curves")
    box = wait_for(viewer, lambda d: css(d, '[data-testid="stMultiSelect"] input'), TIMEOUT_S, "the Runs picker")[0]
    box.click()
    listed = wait_for(viewer, lambda d: [o.text for o in css(d, '[role="option"]')] or None, 30, "the run options")
    listed += [el.text for el in css(viewer, '[data-testid="stMultiSelect"]')]  # the chips already selected
    for run in runs:  # a finished run's chip reads "Features · BACKBONE · ACCURACY"
        accuracy = f"{run.metrics()['val_accuracy']:.1%}"
        assert any(run.config["backbone"] in text and accuracy in text for text in listed), (run.id, listed)
    box.send_keys(Keys.ESCAPE)  # close the list
    wait_idle(viewer, TIMEOUT_S)
    assert_clean(viewer)

    # after all that, every session still shows its own choices
    check_own_selections()
    elapsed = time.perf_counter() - started
    for n, driver in enumerate(browsers):
        screenshot(driver, screenshots, f"concurrent_session_{n + 1}")
    print(f"\n5 sessions, 2 runs ({', '.join(r.id for r in runs)}): {elapsed:.0f} s")
