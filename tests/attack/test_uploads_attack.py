"""Attacks by upload, through the Dataset page's zip uploader in Chromium (issue 27, attacks 1
and 6): a zip carrying code and a forged queued run that names it, a zip with a symbolic link,
and a zip of 300,000 skipped members. Judged by effects: the code's marker file, the runs the
app lists and the processes running, the files unpacked."""

from __future__ import annotations

import json
import time

import pytest

from core.runs.store import RunStore
from tests.attack import forge
from tests.browser.ui import (RADIO, assert_clean, click_text, css, nav, screenshot, text_of, wait_for,
                              wait_idle)

pytestmark = [pytest.mark.attack, pytest.mark.browser]

UPLOADER = '[data-testid="stFileUploaderDropzoneInput"]'
PAGE_TIMEOUT_S = 180
FORGED_ID = "20260101-000000-pwn-beef"
PUMP_WAIT_S = 6  # pages pump the queue on every render; a started worker would write its marker at once


def upload_zip(driver, url: str, path) -> str:
    """A fresh session uploads ``path`` on the Dataset page; returns the page text once it settled."""
    driver.get(url)
    wait_for(driver, lambda d: any(h.text == "Transfer Lab" for h in css(d, "h1")), PAGE_TIMEOUT_S, "the home page")
    wait_idle(driver)
    nav(driver, "Dataset")
    click_text(driver, RADIO, "Upload a zip")
    wait_for(driver, lambda d: css(d, UPLOADER), 60, "the zip uploader")
    css(driver, UPLOADER)[0].send_keys(str(path))
    wait_for(driver, lambda d: any(t in text_of(d) for t in ("Zip rejected", "Rejected zip", "Usable images")),
             PAGE_TIMEOUT_S, "the upload's outcome")
    wait_idle(driver)
    return text_of(driver)


def test_uploaded_code_and_a_forged_run_never_run(served, browser, as_server, outside, tmp_path, screenshots):
    """Attack 1: a zip holding pwn.py and runs/<id>/ (queued, config "entry": "pwn:go", a model
    file) is unpacked as a dataset; the Training curves and Strategies pages pump the queue. The
    code's marker never appears, no process runs it, and the forged run is listed nowhere."""
    url, home = served
    as_server(home)
    marker = outside / "pwned"
    code = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
            f"def go(run=None):\n    pathlib.Path({str(marker)!r}).write_text('ran')\n")
    run = f"runs/{FORGED_ID}/"
    members = [
        ("pwn.py", code.encode()),
        (run + "config.json", json.dumps({"strategy": "feature_extraction", "entry": "pwn:go", "dataset": "."}).encode()),
        (run + "status.json", json.dumps({"state": "queued", "created": time.time(), "started": None, "finished": None,
                                          "pid": None, "pid_start": None, "host": None, "heartbeat": None,
                                          "error": None, "reason": None}).encode()),
        (run + "meta.json", json.dumps({"name": "forged pwn run"}).encode()),
        (run + "model.keras", b"PK\x03\x04 a model nobody trained"),
        *[(f"{cls}/{i}.png", forge.png_bytes(colour)) for cls, colour in (("cats", (200, 120, 40)),
                                                                             ("dogs", (40, 120, 200))) for i in range(3)],
    ]
    page = upload_zip(browser, url, forge.raw_zip(tmp_path / "pwn.zip", members))
    assert "Usable images" in page, page[:2000]
    unpacked = home / "users" / "local" / "datasets" / "pwn"
    assert (unpacked / "pwn.py").is_file() and (unpacked / run / "config.json").is_file()  # the payload arrived
    assert not css(browser, '[data-testid="stSidebar"] input[aria-label*="Data directory"]')  # no folder to switch to

    for title in ("Training curves", "Strategies"):
        nav(browser, title)
        time.sleep(PUMP_WAIT_S)
        assert FORGED_ID not in text_of(browser) and "forged pwn run" not in text_of(browser)
    assert not marker.exists(), f"the uploaded code ran: {marker.read_text()}"
    assert FORGED_ID not in [r.id for r in RunStore().list()]  # what every page (and the Classifier) lists
    assert not forge.processes_mentioning(FORGED_ID) and not forge.processes_mentioning(str(home))  # no worker
    assert_clean(browser)


def test_a_zip_with_a_symbolic_link_is_refused(served, browser, as_server, outside, tmp_path, screenshots):
    """A zip whose member is a symbolic link to a file outside (a visitor's way to make the server
    read it through a scan) is refused whole: nothing is unpacked, the visitor is told why."""
    url, home = served
    as_server(home)
    secret = forge.solid_png(outside / "secret.png", (13, 237, 101))
    members = [("linked/a/1.png", forge.png_bytes((200, 120, 40))), ("linked/b/1.png", forge.png_bytes((40, 120, 200))),
               ("linked/b/secret.png", str(secret).encode())]
    page = upload_zip(browser, url, forge.raw_zip(tmp_path / "linked.zip", members,
                                                  symlinks=frozenset({"linked/b/secret.png"})))
    assert "Rejected zip: member 'linked/b/secret.png' is a symbolic link" in page, page[:2000]
    assert not (home / "users" / "local" / "datasets" / "linked").exists()
    assert_clean(browser, errors_allowed=True)
    screenshot(browser, screenshots, "attack_zip_symlink_refused")


def test_a_zip_of_300000_skipped_members_is_refused(served, browser, as_server, tmp_path, screenshots):
    """Attack 6: a 28 MB zip of 300,000 hidden (skipped) members and 2 images is refused for its
    member count (skipped members count too), through the uploader; nothing is unpacked."""
    url, home = served
    as_server(home)
    members = [(f"junk/.h/{i:06d}", b"") for i in range(300_000)]
    members += [("junk/a/1.png", forge.png_bytes((200, 120, 40))), ("junk/b/1.png", forge.png_bytes((40, 120, 200)))]
    path = forge.raw_zip(tmp_path / "junk.zip", members)
    assert 20e6 < path.stat().st_size < 200e6  # fits the upload limit: the zip itself must be refused
    page = upload_zip(browser, url, path)
    assert "Rejected zip: more than 20,000 files" in page and "skipped ones count too" in page, page[-600:]
    assert "Zip rejected: Rejected" not in page  # said once
    assert not (home / "users" / "local" / "datasets" / "junk").exists()
    assert_clean(browser, errors_allowed=True)
    screenshot(browser, screenshots, "attack_zip_300000_members_refused")
