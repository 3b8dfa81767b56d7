"""No ownership (issue 27, attack 7), with sign-in for real: a local OpenID Connect provider
(oidc-provider-mock on 127.0.0.1) and three Chromium profiles signed in through it as Ann, Bob
and Boss (the admin, in TRANSFER_LAB_ADMINS). Each user's runs are made directly in their
workspace (``settings.session(user)`` + ``RunStore().create``; "running" ones name a `sleep`
of the test's as their worker, so nothing trains). Judged by effects: the other user's run
still there and still running, their classes and files unchanged; the admin's delete done."""

from __future__ import annotations

import hashlib
import secrets
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from core import layout, settings
from core.data import builder as db
from core.runs.store import RunStore
from tests.attack import forge
from tests.browser.conftest import (_free_port, auth_secrets, chromium, oidc_provider, require_chromium,
                                    streamlit_server)
from tests.browser.ui import (RADIO, click, click_button, click_text, css, nav, screenshot, text_of, wait_for,
                              wait_idle)
from tests.helpers import write_images

pytestmark = [pytest.mark.attack, pytest.mark.browser]

ANN = {"sub": "ann", "email": "ann@example.org", "name": "Ann"}
BOB = {"sub": "bob", "email": "bob@example.org", "name": "Bob"}
BOSS = {"sub": "boss", "email": "boss@example.org", "name": "Boss"}
TIMEOUT_S = 180
UPLOADER = '[data-testid="stFileUploaderDropzoneInput"]'
ERROR = '[data-testid="stAlertContentError"]'


def workspace(home: Path, user: dict) -> Path:
    """The user's workspace in the served app's data directory."""
    return home / layout.USERS / layout.user_id(user["email"])


def tree_digest(folder: Path) -> str:
    """Every file's path and bytes under ``folder``: any change to it changes this."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The provider and the app with sign-in (a strong cookie secret, Boss an admin); yields
    (url, data directory, issuer)."""
    require_chromium()
    base = tmp_path_factory.mktemp("team_attack")
    home = base / "home"
    home.mkdir()
    port = _free_port()
    with oidc_provider(base / "oidc.log", [ANN, BOB, BOSS]) as issuer:
        secrets_file = auth_secrets(base / "secrets.toml", port, issuer, secrets.token_urlsafe(32))
        with streamlit_server(home, {settings.ADMINS_ENV: BOSS["email"]},
                              args=("--secrets.files", str(secrets_file)), port=port) as (_, url, _, _):
            yield url, home, issuer


def sign_in(driver, url: str, issuer: str, user: dict) -> None:
    driver.get(url)
    wait_for(driver, lambda d: any("Sign in" in b.text for b in css(d, "button")), TIMEOUT_S, "the sign-in")
    wait_idle(driver)
    click_button(driver, "Sign in")
    wait_for(driver, lambda d: d.current_url.startswith(issuer) and css(d, f'button[value="{user["sub"]}"]'),
             TIMEOUT_S, "the provider's authorization page")
    click(driver, css(driver, f'button[value="{user["sub"]}"]')[0])
    wait_for(driver, lambda d: f"Signed in: {user['name']} ({user['email']})" in text_of(d, "stSidebar"),
             TIMEOUT_S, f"{user['name']} signed in")
    wait_idle(driver)


@pytest.fixture(scope="module")
def world(team, tmp_path_factory):
    """Ann's and Bob's work, made in their workspaces before they sign in: a finished run each,
    a running run each (its owner already pressed Cancel, so Force stop is offered), a queued run
    of Ann's, and Ann's Label-page dataset "pets"; then the three signed-in browsers."""
    url, home, issuer = team
    mp = pytest.MonkeyPatch()
    mp.setenv(settings.HOME_ENV, str(home))
    data = tmp_path_factory.mktemp("team_data")
    write_images(data / "a", 0, 2)
    photo = [str(data / "a" / "img_000.png")]
    with ExitStack() as stack:
        ann_proc, bob_proc = stack.enter_context(forge.victim()), stack.enter_context(forge.victim())
        with settings.session(ANN["email"]):
            runs = {"ann_done": forge.done_run(RunStore(), data, photo, name="ann finished run"),
                    "ann_running": forge.running_run(RunStore(), ann_proc.pid, name="ann running run",
                                                     cancel_asked=True),
                    "ann_queued": RunStore().create({"strategy": "linear_probe", "dataset": str(data)},
                                                    name="ann queued run")}
            pets = db.create_dataset("pets", ["cats", "dogs"])
            write_images(pets / "cats", 0, 2)
            write_images(pets / "dogs", 1, 2)
        with settings.session(BOB["email"]):
            runs["bob_done"] = forge.done_run(RunStore(), data, photo, name="bob finished run")
            runs["bob_running"] = forge.running_run(RunStore(), bob_proc.pid, name="bob running run",
                                                    cancel_asked=True)
        browsers = {}
        for user in (ANN, BOB, BOSS):
            browsers[user["sub"]] = stack.enter_context(chromium())
            sign_in(browsers[user["sub"]], url, issuer, user)
        yield {"url": url, "home": home, "runs": runs, "pets": pets, "browsers": browsers,
               "procs": {"ann": ann_proc, "bob": bob_proc}}
        for run in RunStore().list(state=("queued", "running")):  # nothing left to start for real
            run.set_status("cancelled", reason="ended by the attack test")
    mp.undo()


def test_each_user_sees_the_others_runs(world, screenshots):
    """Comparing is the point: Ann's Jobs panel lists Bob's running run and Bob's lists Ann's; the
    Training curves page offers both finished runs to both."""
    runs, browsers = world["runs"], world["browsers"]
    for me, other in (("ann", "bob"), ("bob", "ann")):
        driver = browsers[me]
        nav(driver, "Strategies")
        wait_for(driver, lambda d: runs[f"{other}_running"].id in text_of(d), TIMEOUT_S, f"{other}'s run for {me}")
        nav(driver, "Training curves")
        box = wait_for(driver, lambda d: css(d, '[data-testid="stMultiSelect"] input'), TIMEOUT_S, "the Runs picker")[0]
        box.click()
        listed = wait_for(driver, lambda d: [o.text for o in css(d, '[role="option"]')] or None, 30, "the options")
        listed += [el.text for el in css(driver, '[data-testid="stMultiSelect"]')]
        assert any("ann finished run" in t for t in listed) and any("bob finished run" in t for t in listed), listed
        box.send_keys("\ue00c")  # Escape
        wait_idle(driver)


def press_anothers(driver, selector: str) -> str:
    """Press a button of someone else's run: "refused" when the app answered with its refusal,
    "unavailable" when the button is disabled (then it is pressed anyway, its disabled mark taken
    off as a visitor could in the browser's tools, and the effect is what counts)."""
    button = wait_for(driver, lambda d: css(d, selector), TIMEOUT_S, selector)[0]
    if button.is_enabled():
        click(driver, button)
        wait_for(driver, lambda d: any("belongs to someone else" in m for m in forge.seen_messages(d)), TIMEOUT_S,
                 "the refusal")
        return "refused"
    driver.execute_script("arguments[0].removeAttribute('disabled'); arguments[0].click();", button)
    wait_idle(driver)
    return "unavailable"


def test_nobody_stops_or_deletes_anothers_run(world, screenshots):
    """Bob presses Cancel on Ann's queued run, Force stop on her running one and Delete on her
    finished one; Ann presses Force stop on Bob's. Each button is unavailable or refused with a
    message, and each run is still there, in its state, its worker (the `sleep`) alive."""
    runs, browsers, procs = world["runs"], world["browsers"], world["procs"]
    bob, ann = browsers["bob"], browsers["ann"]
    nav(bob, "Strategies")
    forge.watch_messages(bob)
    wait_for(bob, lambda d: css(d, f".st-key-tl_kill_{runs['ann_running'].id} button"), TIMEOUT_S, "Ann's run")
    screenshot(bob, screenshots, "attack_team_stop_unavailable")  # as Bob sees Ann's runs, before he tries
    outcomes = {"cancel": press_anothers(bob, f".st-key-tl_cancel_{runs['ann_queued'].id} button"),
                "force stop": press_anothers(bob, f".st-key-tl_kill_{runs['ann_running'].id} button")}
    forge.select_table_row(bob, "ann finished run")
    wait_for(bob, lambda d: "1 run selected" in text_of(d), 60, "the ticked row")
    wait_idle(bob)
    click_button(bob, "Delete")
    wait_for(bob, lambda d: any("belongs to someone else" in e.text for e in css(d, ERROR)), TIMEOUT_S,
             "the refusal of Delete")
    wait_idle(bob)
    screenshot(bob, screenshots, "attack_team_delete_refused")

    nav(ann, "Strategies")
    forge.watch_messages(ann)
    outcomes["ann's force stop"] = press_anothers(ann, f".st-key-tl_kill_{runs['bob_running'].id} button")
    print(f"\nbuttons of another user's runs: {outcomes}")

    time.sleep(1.0)
    assert runs["ann_queued"].status()["state"] == "queued" and not runs["ann_queued"].cancel_requested()
    for key in ("ann_running", "bob_running"):
        status = runs[key].status()
        assert status["state"] == "running" and status["reason"] is None, (key, status)
    assert runs["ann_done"].dir.is_dir() and runs["ann_done"].status()["state"] == "done"
    assert all(proc.poll() is None for proc in procs.values())


def test_nobody_sees_or_removes_anothers_classes_or_folders(world, screenshots):
    """Bob's Label page offers only his own datasets: he makes his own "pets" (class "birds") and
    deletes its class; Ann's "pets" keeps its classes and photos. Typing Ann's dataset folder on
    the Dataset page is refused: it lies in someone else's workspace."""
    bob, pets = world["browsers"]["bob"], world["pets"]
    before = tree_digest(pets)
    nav(bob, "Label")
    wait_for(bob, lambda d: css(d, 'input[aria-label="Name of the new dataset"]'), 60, "the new dataset form")
    assert "cats" not in text_of(bob, "stMain") and "pets" not in text_of(bob, "stMain")
    css(bob, 'input[aria-label="Name of the new dataset"]')[0].send_keys("pets")
    css(bob, 'input[aria-label^="Classes, separated by commas"]')[0].send_keys("birds")
    click_button(bob, "Create dataset")
    wait_for(bob, lambda d: "Created dataset" in text_of(d), TIMEOUT_S, "Bob's own pets")
    wait_idle(bob)
    assert "cats" not in text_of(bob, "stMain") and "dogs" not in text_of(bob, "stMain")
    click(bob, [e for e in css(bob, '[data-testid="stMain"] summary') if "Classes" in e.text][0])
    click_text(bob, '[data-testid="stCheckbox"] label', "Yes, delete it")
    click_button(bob, "Delete class")
    wait_for(bob, lambda d: "Deleted class" in text_of(d), TIMEOUT_S, "Bob's class deleted")
    wait_idle(bob)
    assert not (workspace(world["home"], BOB) / "datasets" / "pets" / "birds").exists()
    assert tree_digest(pets) == before and sorted(p.name for p in pets.iterdir()) == ["cats", "dogs"]

    nav(bob, "Dataset")
    click_text(bob, RADIO, "Local folder")
    field = 'input[aria-label="Folder path on this machine"]'
    wait_for(bob, lambda d: css(d, field), 60, "the folder input")
    wait_idle(bob)
    css(bob, field)[0].send_keys(f"{pets}\n")
    wait_idle(bob)
    click_button(bob, "Scan folder")
    wait_for(bob, lambda d: any("outside the folders this server allows" in e.text for e in css(d, ERROR)),
             TIMEOUT_S, "the refusal of Ann's folder")
    wait_idle(bob)
    assert "Dataset: none yet" in text_of(bob, "stSidebar")
    screenshot(bob, screenshots, "attack_team_other_workspace_refused")


def upload(driver, path: Path) -> None:
    nav(driver, "Dataset")
    click_text(driver, RADIO, "Upload a zip")
    wait_for(driver, lambda d: css(d, UPLOADER), 60, "the zip uploader")
    css(driver, UPLOADER)[0].send_keys(str(path))
    wait_for(driver, lambda d: "Usable images" in text_of(d) or css(d, ERROR), TIMEOUT_S, "the upload")
    wait_idle(driver)


def flowers_zip(path: Path, classes: dict) -> Path:
    path.parent.mkdir(parents=True)
    return forge.raw_zip(path, [(f"{c}/{i}.png", forge.png_bytes(rgb)) for c, rgb in classes.items() for i in range(2)])


def test_a_zip_of_the_same_name_does_not_replace_anothers_dataset(world, tmp_path):
    """Ann uploads flowers.zip; Bob uploads another flowers.zip. Ann's unpacked files are unchanged,
    Bob's are his own."""
    ann, bob, home = world["browsers"]["ann"], world["browsers"]["bob"], world["home"]
    upload(ann, flowers_zip(tmp_path / "ann" / "flowers.zip", {"roses": (200, 40, 90), "tulips": (240, 200, 30)}))
    anns = workspace(home, ANN) / "datasets" / "flowers"
    before = tree_digest(anns)
    upload(bob, flowers_zip(tmp_path / "bob" / "flowers.zip", {"weeds": (90, 90, 90), "thistles": (120, 0, 160)}))
    assert "Dataset: flowers" in text_of(bob, "stSidebar")
    assert tree_digest(anns) == before and sorted(p.name for p in anns.iterdir()) == ["roses", "tulips"]
    assert sorted(p.name for p in (workspace(home, BOB) / "datasets" / "flowers").iterdir()) == ["thistles", "weeds"]


def test_an_admin_can_delete_and_stop_anyones_run(world, screenshots):
    """Boss, named in TRANSFER_LAB_ADMINS, deletes Bob's finished run and force-stops his running
    one: the run folder is gone, the run is marked failed (the `sleep` is no worker of it, so it
    is not signalled)."""
    runs, boss = world["runs"], world["browsers"]["boss"]
    nav(boss, "Strategies")
    forge.select_table_row(boss, "bob finished run")
    wait_for(boss, lambda d: "1 run selected" in text_of(d), 60, "the ticked row")
    wait_idle(boss)
    click_button(boss, "Delete")
    wait_for(boss, lambda d: not runs["bob_done"].dir.exists(), TIMEOUT_S, "Bob's run deleted")
    wait_idle(boss)
    assert runs["ann_done"].dir.is_dir()  # only the ticked row
    click_text(boss, f".st-key-tl_kill_{runs['bob_running'].id} button", "Force stop")
    wait_for(boss, lambda d: runs["bob_running"].status()["state"] == "failed", TIMEOUT_S, "Bob's run stopped")
    assert world["procs"]["bob"].poll() is None
