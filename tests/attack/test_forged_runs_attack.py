"""Attacks through files a run folder holds, on the served app without sign-in (issue 27,
attacks 2, 3 and 4): a status naming a process the run does not own, predictions naming a photo
outside the allowed roots, and run names, stored reasons and class names written as markdown.
The forged files are written straight into the server's data directory, as a forger with file
access (or a bug, or a stale file) would leave them; the visitor then uses the pages in Chromium.
Judged by effects: the named process still alive, the bytes served at /media/, the DOM."""

from __future__ import annotations

import time

import pytest

from core.runs.store import RunStore, process_start_time
from tests.attack import forge
from tests.browser.ui import (assert_clean, click, click_button, click_text, css, nav, one_split, scan_folder,
                              screenshot, text_of, wait_for, wait_idle)
from tests.helpers import write_images

pytestmark = [pytest.mark.attack, pytest.mark.browser]

PAGE_TIMEOUT_S = 180
SECRET_RGB = (13, 237, 101)  # the outside photo: a green no page draws by itself
INSIDE_RGB = (30, 60, 220)  # a photo inside the roots: the control, it is drawn
TILE_RGB = (200, 200, 200)  # stats.thumbnail's "cannot show" tile
UI_NAME = f"![x]({forge.IMG_URL}) [click]({forge.LINK_URL}) :red[big]"  # the name field takes 80 characters


def fresh(driver, url: str, page: str) -> None:
    """A new session (a fresh page load) on ``page``."""
    driver.get(url)
    wait_for(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), PAGE_TIMEOUT_S, "the home page")
    wait_idle(driver)
    nav(driver, page)


def finish_everything() -> None:
    """No run of the server left queued or running (so the next test's pages pick their own,
    and no queued run is ever started for real)."""
    for run in RunStore().list(state=("queued", "running")):
        run.set_status("cancelled", reason="ended by the attack test")


def test_force_stop_never_kills_a_process_the_run_does_not_own(served, browser, as_server, screenshots):
    """Attack 2: a run's status.json names another process of the server's user (a `sleep` with its
    real pid, start time and host) as its running worker; the visitor presses Cancel, then Force
    stop. The process is still alive: only a verified worker of that run is ever signalled."""
    url, home = served
    as_server(home)
    finish_everything()
    with forge.victim() as proc:
        start = process_start_time(proc.pid)
        run = forge.running_run(RunStore(), proc.pid, name="forged running run")
        fresh(browser, url, "Strategies")
        wait_for(browser, lambda d: run.id in text_of(d), PAGE_TIMEOUT_S, "the forged run in the Jobs panel")
        click_text(browser, f".st-key-tl_cancel_{run.id} button", "Cancel")
        wait_for(browser, lambda d: css(d, f".st-key-tl_kill_{run.id} button"), PAGE_TIMEOUT_S, "Force stop")
        click_text(browser, f".st-key-tl_kill_{run.id} button", "Force stop")
        # the page's note of it lasts until the panel's next refresh: the run's status says it was done
        wait_for(browser, lambda d: run.status()["state"] != "running", PAGE_TIMEOUT_S, "the outcome of Force stop")
        wait_idle(browser)
        time.sleep(1.0)  # a SIGKILL lands at once; give it the time anyway
        assert forge.alive(proc, start), "Force stop killed a process that is not the run's worker"
        assert_clean(browser, errors_allowed=True)
        screenshot(browser, screenshots, "attack_force_stop_foreign_process")
    assert run.status()["state"] == "failed"  # the stop was carried out, on the run only


def test_an_image_outside_the_roots_is_never_served(served, browser, as_server, outside, tmp_path, screenshots):
    """Attack 3: a finished run's predictions.csv names a photo outside the allowed roots beside one
    inside them; its Training curves page draws the worst predictions. Of everything the page serves
    at /media/, nothing carries the outside photo's bytes or pixels (the control, the inside
    photo, is served; the outside one is the "cannot show" tile)."""
    url, home = served
    as_server(home)
    finish_everything()
    inside = forge.solid_png(tmp_path / "inside" / "a" / "in.png", INSIDE_RGB)
    secret = forge.solid_png(outside / "secret.png", SECRET_RGB)
    run = forge.done_run(RunStore(), tmp_path / "inside", [str(secret), str(inside)], name="outside photo run")
    fresh(browser, url, "Training curves")
    wait_for(browser, lambda d: "Worst validation predictions" in text_of(d) and run.id in text_of(d),
             PAGE_TIMEOUT_S, "the run's worst predictions")
    wait_idle(browser)
    served_images = {u: forge.fetch(u) for u in forge.media_urls(browser, url)}
    assert served_images, "the page served no image at all"
    assert max(forge.colour_share(d, INSIDE_RGB) for d in served_images.values()) > 0.5  # the control is drawn
    assert max(forge.colour_share(d, TILE_RGB) for d in served_images.values()) > 0.5  # the refusal tile
    leaked = {u: forge.colour_share(d, SECRET_RGB) for u, d in served_images.items()}
    assert max(leaked.values()) < 0.01, f"the outside photo was served: {leaked}"
    assert secret.read_bytes() not in served_images.values()
    assert_clean(browser, errors_allowed=True)
    screenshot(browser, screenshots, "attack_outside_photo_not_drawn")


def check_text_only(driver, url: str, *literals: str) -> None:
    """No element the payloads would make, and each payload shown as the characters it holds."""
    found = forge.injected_elements(driver, url)
    assert not found, f"injected elements in the page: {found}"
    body = text_of(driver)
    missing = [text for text in literals if text not in body]
    assert not missing, f"not shown literally: {missing}"


def test_run_names_and_reasons_show_as_text_on_the_strategies_page(served, browser, as_server, tmp_path,
                                                                   screenshots):
    """Attack 4: run names (meta.json, and the Strategies page's own "Run name" field) and a failed
    run's stored reason hold markdown: an image, raw HTML, links, colour. In the Jobs panel and the
    failed runs' note no injected <img> or link exists, and the names read as typed."""
    url, home = served
    as_server(home)
    finish_everything()
    dataset = tmp_path / "stripes"
    for i, cls in enumerate(["horizontal", "vertical"]):
        write_images(dataset / cls, i, 6, size=(48, 48), seed=5)
    store = RunStore()
    with forge.victim() as blocker:  # a "running" run holds the local user's one job slot: the rest stay queued
        forge.running_run(store, blocker.pid, name=forge.RUN_NAME, dataset=str(dataset))
        store.create({"strategy": "feature_extraction", "dataset": str(dataset)}, name=forge.RUN_NAME)
        failed = store.create({"strategy": "linear_probe", "dataset": str(dataset)}, name=forge.RUN_NAME)
        failed.set_status("failed", reason=forge.REASON, error=f"Traceback: {forge.REASON}")
        try:
            # the visitor names a run in the page's own field, and queues it
            fresh(browser, url, "Dataset")
            scan_folder(browser, dataset)
            nav(browser, "Strategies")
            click(browser, [e for e in css(browser, '[data-testid="stMain"] summary')
                            if "Advanced options" in e.text][0])
            field = 'input[aria-label="Run name (optional)"]'
            box = wait_for(browser, lambda d: css(d, field), 60, "the run name field")[0]
            box.send_keys(UI_NAME + "\n")
            wait_idle(browser)
            one_split(browser)  # a small set: the page's default repeats over 5 splits
            click_button(browser, "Train selected")
            wait_for(browser, lambda d: "Queued training: 1 run" in text_of(d), PAGE_TIMEOUT_S, "the launch message")
            wait_idle(browser)
            assert UI_NAME in [r.name for r in store.list(state="queued")]
            wait_for(browser, lambda d: text_of(d).count("127.0.0.1") >= 4, PAGE_TIMEOUT_S, "the injected runs")
            wait_idle(browser)
            screenshot(browser, screenshots, "attack_markdown_strategies")
            check_text_only(browser, url, forge.RUN_NAME, UI_NAME, forge.REASON)
            assert_clean(browser, errors_allowed=True)
        finally:
            finish_everything()  # the named run never trains


def test_a_failed_runs_name_and_reason_show_as_text_on_its_curves_page(served, browser, as_server, screenshots):
    """Attack 4: a failed run named as markdown, its stored reason too; its Training curves page
    (the newest run opens by itself) holds no injected element and shows both as typed."""
    url, home = served
    as_server(home)
    finish_everything()
    failed = RunStore().create({"strategy": "linear_probe", "dataset": "/nowhere"}, name=forge.RUN_NAME)
    failed.set_status("failed", reason=forge.REASON, error=f"Traceback: {forge.REASON}")
    fresh(browser, url, "Training curves")
    wait_for(browser, lambda d: "This run failed" in text_of(d), PAGE_TIMEOUT_S, "the failed run's details")
    wait_idle(browser)
    screenshot(browser, screenshots, "attack_markdown_curves")
    check_text_only(browser, url, forge.REASON)
    assert_clean(browser, errors_allowed=True)


def test_class_names_show_as_text(served, browser, as_server, screenshots):
    """Attack 4: a dataset built on the Label page with classes named as markdown (an image, raw
    HTML, a mailto link, colour; a class is a folder, so no slashes): the page's messages, tabs
    and lists hold no injected element and show the names as typed."""
    url, home = served
    as_server(home)
    fresh(browser, url, "Label")
    wait_for(browser, lambda d: css(d, 'input[aria-label="Name of the new dataset"]'), 60, "the new dataset form")
    css(browser, 'input[aria-label="Name of the new dataset"]')[0].send_keys("inject")
    css(browser, 'input[aria-label^="Classes, separated by commas"]')[0].send_keys(", ".join(forge.CLASS_NAMES))
    click_button(browser, "Create dataset")
    wait_for(browser, lambda d: "Created dataset" in text_of(d) or css(d, '[data-testid="stAlertContentError"]'),
             PAGE_TIMEOUT_S, "the new dataset")
    wait_idle(browser)
    classes = sorted(p.name for p in (home / "users" / "local" / "datasets" / "inject").iterdir())
    assert classes == sorted(forge.CLASS_NAMES)  # the payloads are the folder names
    screenshot(browser, screenshots, "attack_markdown_label_classes")
    check_text_only(browser, url, *forge.CLASS_NAMES)
    assert_clean(browser)
