"""What the attack tests forge (zips, run files, images, processes) and how they judge the
effects (markers on disk, live processes, bytes served at /media/, elements in the DOM).

Helpers only: the fixtures are in ``conftest.py``. Nothing here is the app's own code, so a
test that passes because a helper is wrong would be caught by its control (each browser
test also shows the attack's payload arriving where a visitor can put it).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import time
import urllib.request
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image

from tests.browser.ui import wait_for

# ---------------------------------------------------------------- markdown payloads

IMG_URL = "http://127.0.0.1:9/x.png"  # port 9 (discard): nothing answers, so nothing is fetched for real
LINK_URL = "http://127.0.0.1:9/evil"
# A run name may hold anything (meta.json, or the Strategies page's "Run name" field).
RUN_NAME = f"![x]({IMG_URL}) <img src=x onerror=alert(1)> [click]({LINK_URL}) :red[big]"
REASON = f"disk full ![r]({IMG_URL}) [help]({LINK_URL}) :red[reason]"
# A class is a folder: no slashes, so its payloads are relative.
CLASS_IMG = "![c](cls.png)"
CLASS_HTML = "<img src=y onerror=alert(2)>"
CLASS_LINK = "[click](mailto:evil@example.org)"
CLASS_STYLE = ":red[big]"
CLASS_NAMES = (CLASS_IMG, CLASS_HTML, CLASS_LINK, CLASS_STYLE)

_INJECTED_JS = """
const base = arguments[0];
const out = [];
const where = (el) => {
  const box = el.closest('[data-testid]:not([data-testid="stMarkdownContainer"])');
  return box ? ' in ' + box.getAttribute('data-testid') + ': ' + (box.innerText || '').slice(0, 120).replace(/\\n/g, ' ') : '';
};
for (const img of document.querySelectorAll('img')) {
  const src = img.getAttribute('src') || '';
  if (src.includes('127.0.0.1:9') || src === 'x' || src === 'y' || src.endsWith('/x') || src.endsWith('/y')
      || src.endsWith('cls.png') || img.hasAttribute('onerror')) out.push('<img src=' + src + '>' + where(img));
}
for (const a of document.querySelectorAll('a')) {
  const href = a.getAttribute('href') || '';
  const own = href.startsWith('/') || href === base || href.startsWith(base + '/') || href.startsWith(base + '?');
  if ((href.includes('127.0.0.1') && !own) || href.includes('evil') || href.startsWith('mailto:')) {
    out.push('<a href=' + href + '>' + where(a));
  }
}
for (const el of document.querySelectorAll('[onerror]')) out.push('onerror on ' + el.tagName + where(el));
return [...new Set(out)];
"""


def injected_elements(driver, base: str) -> list[str]:
    """Every element on the page that an injected name would have made: an <img> with an
    injected source, a link to anywhere but the app itself (``base``: its address), an
    ``onerror`` handler. (Colour, ``:red[...]``, is caught by the text not reading as typed.)"""
    return driver.execute_script(_INJECTED_JS, base.rstrip("/"))


def media_urls(driver, base: str) -> list[str]:
    """The address of every image the page shows from the server's /media/ store."""
    srcs = driver.execute_script("return [...document.querySelectorAll('img')].map(i => i.src);")
    return sorted({src if src.startswith("http") else base + src for src in srcs if "/media/" in src})


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def colour_share(data: bytes, rgb: tuple[int, int, int], tolerance: int = 6) -> float:
    """The share of an image's pixels within ``tolerance`` of ``rgb`` (0 for bytes that are no image)."""
    try:
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)
    except Exception:  # noqa: BLE001  not an image: none of its pixels
        return 0.0
    close = np.all(np.abs(pixels - np.array(rgb, np.int16)) <= tolerance, axis=-1)
    return float(close.mean())


def solid_png(path: Path, rgb: tuple[int, int, int], size: int = 96) -> Path:
    """A PNG of one colour: its thumbnail is recognisable among everything else the page serves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)
    return path


def png_bytes(rgb: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- zips

def raw_zip(path: Path, members: list[tuple[str, bytes]], symlinks: frozenset[str] = frozenset()) -> Path:
    """A stored (uncompressed) zip written by hand, fast for hundreds of thousands of members
    (zip64 end records when there are more than 65,535); names in ``symlinks`` are marked as
    symbolic links (Unix mode in the external attributes), their data being the link target."""
    local, central = bytearray(), bytearray()
    for name, data in members:
        raw = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(local)
        mode = (0o120777 if name in symlinks else 0o100644) << 16
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, 0, 0, 0x21, crc, len(data), len(data),
                             len(raw), 0) + raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0x800, 0, 0, 0x21, crc, len(data),
                               len(data), len(raw), 0, 0, 0, 0, mode, offset) + raw
    count, cd_offset, cd_size = len(members), len(local), len(central)
    tail = bytearray()
    if count > 0xFFFF:
        zip64_at = cd_offset + cd_size
        tail += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
        tail += struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1)
    shown = min(count, 0xFFFF)
    tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, shown, shown, cd_size, cd_offset, 0)
    path.write_bytes(bytes(local) + bytes(central) + bytes(tail))
    return path


# ---------------------------------------------------------------- runs

def done_run(store, dataset: Path, paths: list[str], name: str | None = None):
    """A finished run as the worker leaves it (history, metrics, per-image predictions), its
    predictions naming ``paths``: what a forger with file access, or a stale file, could hold."""
    run = store.create({"strategy": "feature_extraction", "dataset": str(dataset), "backbone": "mobilenet_v2",
                        "weights": "imagenet", "seed": 1}, name=name)
    run.set_status("running")
    for epoch in range(2):
        run.append_history({"epoch": epoch + 1, "phase": "head", "loss": 0.6 - epoch / 10, "accuracy": 0.6,
                            "val_loss": 0.7, "val_accuracy": 0.5, "lr": 1e-3, "seconds": 1.0})
    n = len(paths)
    true = ["a" if i % 2 == 0 else "b" for i in range(n)]
    run.write_predictions(pd.DataFrame({
        "path": paths, "true": true, "predicted": ["b" if t == "a" else "a" for t in true],
        "confidence": [0.9] * n, "true_confidence": [0.1 + i / 100 for i in range(n)], "correct": [False] * n}))
    run.write_metrics({
        "val_accuracy": 0.5, "val_loss": 0.7, "macro_f1": 0.5, "confusion_matrix": [[1, 1], [1, 1]],
        "classes": ["a", "b"], "val_images": n, "train_images": 10, "input_size": 32, "train_seconds": 3.0,
        "trainable_params": 1234, "epochs_run": 2,
        "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for c in ("a", "b")}})
    run.set_status("done")
    return run


def running_run(store, pid: int, name: str | None = None, cancel_asked: bool = False, dataset: str = "/nowhere"):
    """A run whose status.json says ``running`` in process ``pid`` of this host, with that process's
    real start time: a forged (or stale) status naming someone else's process."""
    from core.runs.store import HOST, process_start_time

    run = store.create({"strategy": "feature_extraction", "dataset": dataset, "backbone": "mobilenet_v2",
                        "weights": "imagenet", "seed": 2}, name=name)
    now = time.time()
    run.set_status("running", pid=pid, pid_start=process_start_time(pid), host=HOST, started=now, heartbeat=now)
    if cancel_asked:
        run.request_cancel()  # its owner pressed Cancel: the page offers Force stop
    return run


@contextmanager
def victim() -> Iterator[subprocess.Popen]:
    """A process of the server's user that no run owns (``sleep 600``), killed afterwards."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def alive(proc: subprocess.Popen, start: int | None) -> bool:
    """Still running, and still the same process (same kernel start time)."""
    from core.runs.store import process_start_time

    return proc.poll() is None and start is not None and process_start_time(proc.pid) == start


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (this test's own excepted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{entry.name}: {cmd}")
    return found


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


# ---------------------------------------------------------------- big images

def write_png16(path: Path, width: int = 8000, height: int = 8000) -> Path:
    """A 16-bit greyscale PNG of ``width`` × ``height``, one value per row, written row by row
    (no full-size array in the test): about 150 kB on disk for 8000 × 8000."""
    comp = zlib.compressobj(9)
    parts = []
    for y in range(height):
        parts.append(comp.compress(b"\x00" + struct.pack(">H", (y * 8) & 0xFFFF) * width))
    parts.append(comp.flush())

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- browser

_WATCH_JS = """
if (!window.__tlSeen) {
  window.__tlSeen = [];
  const look = () => {
    for (const el of document.querySelectorAll('[data-testid="stAlertContainer"], [data-testid^="stAlertContent"]')) {
      const text = el.innerText;
      if (text && !window.__tlSeen.includes(text)) window.__tlSeen.push(text);
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
  look();
}
"""


def watch_messages(driver) -> None:
    """Record every message box the page shows from now on, even one a refresh replaces a second
    later (``seen_messages``); a full page load forgets them."""
    driver.execute_script(_WATCH_JS)


def seen_messages(driver) -> list[str]:
    return driver.execute_script("return window.__tlSeen || [];")


TABLE = '[data-testid="stDataFrame"]'
ROW_PX = 35  # st.dataframe's row height, its header's too


def select_table_row(driver, text: str) -> None:
    """Tick the row of the page's (first) table whose cells contain ``text``: its checkbox is
    drawn on a canvas, so the click goes to where the row is (the grid's accessible copy of the
    table says which row that is; the grid fills it in after the page goes idle, so it is waited for)."""
    from selenium.webdriver.common.action_chains import ActionChains

    def row_index(d):
        grids = d.find_elements("css selector", TABLE)
        if not grids:
            return None
        grid = grids[0]
        rows = d.execute_script("return [...arguments[0].querySelectorAll('table tr')].map(r => r.innerText);", grid)
        return next(((grid, i) for i, row in enumerate(rows[1:]) if text in row), None)

    grid, index = wait_for(driver, row_index, 60, f"the table row of {text!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", grid)
    time.sleep(0.5)
    w, h = grid.size["width"], grid.size["height"]
    ActionChains(driver).move_to_element_with_offset(grid, -w / 2 + 18, -h / 2 + ROW_PX * (index + 1) + ROW_PX // 2
                                                     ).click().perform()
