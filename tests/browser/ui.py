"""Selenium helpers shared by the browser tests. Streamlit redraws its elements on every
run, so every wait treats a stale or vanished element as "not yet" rather than as a
failure. Selenium is imported inside the helpers, as in conftest.py, so the browser
modules still import where it is not installed."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'
ERRORS = f'{EXCEPTION}, [data-testid="stAlertContentError"]'  # an exception or an st.error box
RADIO = '[data-testid="stRadio"] label'
BUTTONS = '[data-testid="stButton"] button, [data-testid="stFormSubmitButton"] button'
IDLE_TIMEOUT_S = 300  # how long a page's script may run (model loads on a shared 2-core CPU)
CLICK_TIMEOUT_S = 120


def css(driver, selector: str) -> list:
    return driver.find_elements("css selector", selector)


def text_of(driver, testid: str = "stApp") -> str:
    """The visible text of the app, or of one part of it (``stSidebar``, ``stMain``), as a reader
    sees it: without the invisible word joiners ``app_pages.common.plain`` puts inside addresses."""
    return driver.find_element("css selector", f'[data-testid="{testid}"]').text.replace("\u2060", "")


def wait_for(driver, condition, timeout: float, what: str = "", poll: float = 0.25):
    """``condition(driver)``'s first truthy value; an element re-rendered or removed while
    it is being read, or a page navigating away under the read (Chromium then answers
    "unhandled inspector error"), counts as "not yet", and the timeout says what was awaited."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=poll, ignored_exceptions=(WebDriverException,)).until(
        condition, message=f"timed out after {timeout:g} s waiting for {what or 'the condition'}")


def wait_idle(driver, timeout: float = IDLE_TIMEOUT_S) -> None:
    """Until the script has finished running and is still finished a second later
    (a widget change can start a rerun just after the previous one ended)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        wait_for(driver, lambda d: css(d, IDLE), timeout, "the script to finish")
        time.sleep(1.0)
        if css(driver, IDLE):
            return
    raise AssertionError("the app kept running")


def assert_clean(driver, errors_allowed: bool = False) -> None:
    """No exception on the page and, unless ``errors_allowed``, no st.error box."""
    found = css(driver, EXCEPTION if errors_allowed else ERRORS)
    assert not found, found[0].text


def screenshot(driver, folder: Path, name: str, settle_s: float = 1.5) -> Path:
    """The whole page: the window is made as tall as Streamlit's scrolling main area,
    then ``settle_s`` lets charts re-layout and images paint."""
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]');"
        "return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight);")
    driver.set_window_size(1400, min(int(height) + 80, 14000))
    time.sleep(settle_s)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


@contextmanager
def screenshot_on_failure(driver, folder: Path, name: str):
    """A failing test leaves ``name``.png: what the user saw when it went wrong."""
    try:
        yield
    except Exception:
        screenshot(driver, folder, name)
        raise


def nav_links(driver) -> dict:
    """Sidebar page links by title (a link's text starts with its icon's name)."""
    return wait_for(driver, lambda d: {a.text.strip().splitlines()[-1]: a
                                       for a in css(d, '[data-testid="stSidebarNavLink"]')}, 60, "the page links")


def nav(driver, title: str, timeout: float = IDLE_TIMEOUT_S) -> None:
    """Client-side page switch through the sidebar, which keeps the session and its
    dataset (a ``driver.get`` would start a new one). The URL changes once the server
    runs the new page, so waiting for it and then for idle waits for the page itself."""
    def click(d):
        link = nav_links(d).get(title)
        if link is None:
            return None
        href = link.get_attribute("href")
        link.click()
        return href

    href = wait_for(driver, click, 60, f"the {title} link")
    wait_for(driver, lambda d: d.current_url.rstrip("/") == href.rstrip("/"), timeout, f"the {title} page")
    wait_idle(driver, timeout)


def click(driver, element) -> None:
    """Scroll ``element`` to the middle first: at the window's edge Streamlit's header
    or toolbar can take the click."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    time.sleep(0.3)
    element.click()


def click_text(driver, selector: str, label: str, timeout: float = CLICK_TIMEOUT_S) -> None:
    """Click the first enabled element matching ``selector`` whose text contains ``label``,
    waiting for it to be drawn."""
    def attempt(d):
        found = [el for el in css(d, selector) if label in el.text and el.is_enabled()]
        if found:
            click(d, found[0])
        return bool(found)

    wait_for(driver, attempt, timeout, f"'{label}' to click")


def click_button(driver, label: str, timeout: float = CLICK_TIMEOUT_S) -> None:
    """A button, form submit buttons included, by (part of) its label."""
    click_text(driver, BUTTONS, label, timeout)


def one_split(driver, timeout: float = 60) -> None:
    """On the Strategies page, set "Repeat over k splits" to 1: the generated sets are small, so the
    page's default repeats each strategy over 5 splits (``core.train.folds.default_folds``)."""
    from selenium.webdriver.common.keys import Keys

    field = 'input[aria-label="Repeat over k splits"]'
    box = wait_for(driver, lambda d: css(d, field), timeout, "the repeat-over-k-splits field")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("1", Keys.ENTER)
    wait_for(driver, lambda d: css(d, field)[0].get_attribute("value") == "1", timeout, "one split")
    wait_idle(driver)


def scan_folder(driver, folder: Path, timeout: float = 120) -> None:
    """Make ``folder`` this session's dataset through the Dataset page's "Local folder" scan."""
    nav(driver, "Dataset")
    click_text(driver, RADIO, "Local folder")
    field = 'input[aria-label="Folder path on this machine"]'
    wait_for(driver, lambda d: css(d, field), 60, "the folder input")
    wait_idle(driver)
    wait_for(driver, lambda d: css(d, field)[0].send_keys(f"{folder}\n") or True, 30, "typing the folder")
    wait_idle(driver)
    click_button(driver, "Scan folder")
    wait_for(driver, lambda d: "Usable images" in text_of(d) and f"Dataset: {folder.name}" in text_of(d, "stSidebar"),
             timeout, f"the scan of {folder.name}")
    wait_idle(driver)
