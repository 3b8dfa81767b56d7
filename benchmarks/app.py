"""App: time from ``streamlit run`` to the first rendered page, against a one-line
Streamlit app started the same way (the ratio), and the peak memory of a
feature-extraction job at two dataset sizes (it must not grow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .common import REPO, Context, GroupResult, at_most, attempt, fmt, fmt_seconds, free_port, log, ratio
from .scale import MEMORY_GROWTH_TARGET, extract_job, peak_mib

APP = REPO / "streamlit_app.py"
HELLO = 'import streamlit as st\nst.title("Hello")\nst.write("A one-line Streamlit app.")\n'
MAIN_CONTENT_JS = """
const main = document.querySelector('[data-testid="stMain"]')
          || document.querySelector('[data-testid="stAppViewContainer"]') || document.querySelector('section.main');
if (!main) return false;
const heading = main.querySelector('h1');
return !!heading && heading.innerText.trim().length > 0;
"""
STARTUP_TIMEOUT_S = 180
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths) -> str | None:
    return next((p for p in paths if Path(p).exists()), shutil.which(Path(paths[0]).name))


def make_browser():
    """Headless Chromium through selenium, or None when either is missing."""
    chrome, driver = _first(CHROMIUM), _first(CHROMEDRIVER)
    if not chrome or not driver:
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def time_startup(script: Path, env: dict, browser=None) -> dict:
    """Seconds from launching ``streamlit run`` to a healthy server, and (with a browser)
    to the first page whose main area shows its title."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless=true",
           f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
           "--server.fileWatcherType=none"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = t0 + STARTUP_TIMEOUT_S
        while not _health(port):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"streamlit not healthy after {STARTUP_TIMEOUT_S} s")
            time.sleep(0.05)
        health_s = time.perf_counter() - t0
        page_s = None
        if browser is not None:
            browser.get(f"http://127.0.0.1:{port}/")
            while not browser.execute_script(MAIN_CONTENT_JS):
                if time.perf_counter() > deadline:
                    raise TimeoutError("the page's main content did not appear")
                time.sleep(0.05)
            page_s = time.perf_counter() - t0
            browser.get("about:blank")
        return {"health_s": health_s, "page_s": page_s, "port": port}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: only what this call started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def startup_item(ctx: Context, result: GroupResult, rounds: int) -> None:
    hello = ctx.home / "hello_app.py"
    hello.write_text(HELLO, encoding="utf-8")
    browser = None
    try:
        browser = make_browser()
    except Exception as exc:  # noqa: BLE001 - no usable browser: fall back to the health poll
        log(f"no headless Chromium ({type(exc).__name__}: {exc}); timing the health endpoint only")
    try:
        log("streamlit run hello_app.py (warm-up, not counted)")
        time_startup(hello, {**os.environ, "TRANSFER_LAB_HOME": str(ctx.home / "app-home-warmup")}, browser)
        times = {"hello": [], "app": []}
        for i in range(rounds):  # alternate so that machine noise hits both alike
            for label, script in (("hello", hello), ("app", APP)):
                env = {**os.environ, "TRANSFER_LAB_HOME": str(ctx.home / f"app-home-{label}-{i}")}
                log(f"streamlit run {script.name} (round {i + 1}/{rounds})")
                times[label].append(time_startup(script, env, browser))
    finally:
        if browser is not None:
            browser.quit()
    key = "page_s" if browser is not None else "health_s"
    what = "first rendered page (headless Chromium)" if browser is not None else "healthy server (HTTP poll)"

    def mean(label, k):
        vals = [t[k] for t in times[label] if t[k] is not None]
        return sum(vals) / len(vals) if vals else None

    app_s, hello_s = mean("app", key), mean("hello", key)
    r = ratio(app_s, hello_s)
    result.figures["startup"] = {"measured_to": what, "rounds": rounds, "runs": times, "app_s": app_s,
                                 "hello_s": hello_s, "ratio": r,
                                 "app_health_s": mean("app", "health_s"), "hello_health_s": mean("hello", "health_s")}
    result.add("6 app start to first page", f"{what}: Transfer Lab {fmt_seconds(app_s)} / one-line app "
               f"{fmt_seconds(hello_s)} (mean of {rounds})", r, "informative")
    result.add("6 app start seconds", f"streamlit run streamlit_app.py -> {what}", app_s)


def memory_item(ctx: Context, result: GroupResult, small: int, large: int) -> None:
    a, b = extract_job(ctx, small), extract_job(ctx, large)
    growth = ratio(peak_mib(b), peak_mib(a))
    result.figures["memory"] = {"small": {"images": small, **a}, "large": {"images": large, **b},
                                "growth": growth}
    result.add(f"6 extraction job peak RSS {large} / {small} images",
               f"{fmt(peak_mib(b))} MiB / {fmt(peak_mib(a))} MiB (VmHWM, fresh process each)", growth,
               f"<= {MEMORY_GROWTH_TARGET}", at_most(growth, MEMORY_GROWTH_TARGET))


def run(ctx: Context) -> GroupResult:
    result = GroupResult("app", ctx.quick)
    small, large = (50, 200) if ctx.quick else (500, 2000)
    if ctx.quick:
        result.notes.append(f"--quick: memory at {small} vs {large} images (full: 500 vs 2,000); one startup round")
    attempt(result, "6 app start", startup_item, ctx, result, 1 if ctx.quick else 3)
    attempt(result, "6 extraction job memory", memory_item, ctx, result, small, large)
    return result
