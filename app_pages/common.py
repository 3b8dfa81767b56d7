"""Shared by every page (this module is not a page): session-state keys, the
sidebar, cached loaders and the friendly error display.

Nothing here imports TensorFlow at import time: the first page must render
without it. Models load once per process through ``st.cache_resource``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from core import settings
from core.errors import TransferLabError

# Session-state keys other pages may read.
DATASET = "tl_dataset"  # the core.data.dataset.Dataset in use (absent until one is scanned)
BACKBONE = "tl_backbone"  # registry name picked in the sidebar
PENDING = "tl_pending"  # source the Dataset page should open next: "sample" or (root, name)

DATASET_PAGE = "app_pages/dataset.py"
BACKBONES_PAGE = "app_pages/backbones.py"


@contextmanager
def friendly_errors():
    """Show a ``TransferLabError`` as ``st.error`` (its message is written for users)."""
    try:
        yield
    except TransferLabError as exc:
        st.error(str(exc), icon=":material/error:")


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 file', '3 files': counts read as sentences."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def current_dataset():
    return st.session_state.get(DATASET)


def current_backbone() -> str:
    if BACKBONE not in st.session_state:
        st.session_state[BACKBONE] = default_backbone()
    return st.session_state[BACKBONE]


def default_backbone() -> str:
    """The first backbone usable offline, else a small one that downloads quickly."""
    from core.nets.backbones import list_backbones, weights_location

    specs = list_backbones()
    local = [s.name for s in specs if weights_location(s) is not None]
    return local[0] if local else "mobilenet_v2"


# ---------------------------------------------------------------- scanning

def scan(root, name: str | None = None):
    """Scan ``root`` with a progress bar; keep the dataset in the session. None on error."""
    from core.data.dataset import scan_folder

    bar = st.progress(0.0, text="Looking for images…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Checked {done:,} of {total:,} images")

    dataset = None
    with friendly_errors():
        dataset = scan_folder(root, name=name, progress=progress)
        st.session_state[DATASET] = dataset
    bar.empty()
    return dataset


@st.cache_data(show_spinner=False, max_entries=4000)
def thumbnail(path: str, size: int, mtime_ns: int) -> np.ndarray:
    """A cached thumbnail; ``mtime_ns`` is part of the key so an edited file is redrawn."""
    from core.data.stats import thumbnail as make

    return np.asarray(make(path, size))


def thumb(path: str, size: int = 160) -> np.ndarray:
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = 0  # stats.thumbnail draws the "cannot show" tile
    return thumbnail(path, size, mtime)


def show_thumb(path: str, root: str, caption: str = "", size: int = 160) -> None:
    """One thumbnail with its path relative to the dataset root as the caption."""
    rel = os.path.relpath(path, root)
    st.image(thumb(path, size), caption=f"{caption}{rel}", width=size)


# ---------------------------------------------------------------- models

@st.cache_resource(show_spinner=False, max_entries=2)
def _backbone(name: str, weights: str | None, weights_dir: str, home: str):
    from core.nets.backbones import load_backbone

    return load_backbone(name, weights=weights)


def load_backbone(name: str, weights: str | None = "imagenet"):
    """A backbone, loaded once per process (keyed by the weights folder too)."""
    return _backbone(name, weights, str(settings.weights_dir()), str(settings.home()))


# ---------------------------------------------------------------- sidebar

def _apply_settings() -> None:
    """Point this app process at another data directory / weights folder."""
    home = st.session_state.get("tl_set_home", "").strip()
    weights = st.session_state.get("tl_set_weights", "").strip()
    if weights and not Path(weights).expanduser().is_dir():
        st.session_state["tl_settings_error"] = f"Weights folder not found: {weights}"
        return
    if home:
        os.environ[settings.HOME_ENV] = home
    else:
        os.environ.pop(settings.HOME_ENV, None)
    if weights:
        os.environ[settings.WEIGHTS_ENV] = weights
    else:
        os.environ.pop(settings.WEIGHTS_ENV, None)
    st.session_state.pop("tl_settings_error", None)
    _backbone.clear()
    if st.session_state.get(BACKBONE) not in _backbone_names():
        st.session_state.pop(BACKBONE, None)


def _backbone_names() -> list[str]:
    from core.nets.backbones import list_backbones

    return [s.name for s in list_backbones()]


def dataset_summary(slot) -> None:
    """The current dataset, drawn into the sidebar slot that ``sidebar()`` returned."""
    ds = current_dataset()
    with slot.container():
        if ds is None:
            st.markdown("**Dataset:** none yet")
            st.page_link(DATASET_PAGE, label="Choose a dataset", icon=":material/photo_library:")
        else:
            st.markdown(f"**Dataset:** {ds.name}")
            st.caption(f"{len(ds.records):,} images · {ds.num_classes} classes · {len(ds.bad_files)} unreadable")


def sidebar():
    """The state every page shares: backbone, data directory and settings; returns the
    slot at the top where ``dataset_summary`` goes once the page has run."""
    from core.nets.backbones import get_spec, list_backbones, weights_location

    with st.sidebar:
        slot = st.empty()
        specs = list_backbones()
        offline = {s.name for s in specs if weights_location(s) is not None}
        names = [s.name for s in specs]
        current_backbone()
        st.selectbox(
            "Backbone",
            names,
            key=BACKBONE,
            format_func=lambda n: ("✓ " if n in offline else "") + get_spec(n).display_name,
            help="The ImageNet network whose features every page uses. "
            "✓: its weights are on this machine (works offline); the others download on first use.",
        )
        if st.session_state[BACKBONE] in offline:
            st.caption("✓ ImageNet weights on this machine")
        else:
            st.caption("ImageNet weights download on first use")
        try:
            home = settings.home()
        except OSError as exc:
            home = os.environ.get(settings.HOME_ENV, "?")
            st.error(f"Data directory not usable: {exc}")
        st.caption(f"Data directory: `{home}`")
        from core.nets import engine  # no TensorFlow import: OpenVINO's device query only

        st.caption(f"Engine: {engine.describe()}")

        with st.expander("Settings", icon=":material/settings:"):
            st.text_input(
                f"Data directory ({settings.HOME_ENV})",
                value=os.environ.get(settings.HOME_ENV, ""),
                key="tl_set_home",
                placeholder=str(Path.home() / ".transfer-lab"),
                help="Where uploads, feature caches, runs and speed measurements are kept.",
            )
            st.text_input(
                f"Weights folder ({settings.WEIGHTS_ENV})",
                value=os.environ.get(settings.WEIGHTS_ENV, ""),
                key="tl_set_weights",
                placeholder="not set",
                help="A folder of Keras weight files (official names) and local backbones (NAME.keras + NAME.json).",
            )
            st.button("Apply", on_click=_apply_settings, key="tl_apply_settings")
            if "tl_settings_error" in st.session_state:
                st.error(st.session_state["tl_settings_error"])
            st.caption("Applies to this app process (the same as setting the environment variables).")
    return slot


# ---------------------------------------------------------------- training pages
STRATEGIES_PAGE = "app_pages/strategies.py"
CURVES_PAGE = "app_pages/curves.py"
CURVES_RUNS = "tl_curves_runs"  # run ids the Curves page shows; set it before st.switch_page


# ---------------------------------------------------------------- classifier page
CLASSIFIER_PAGE = "app_pages/classifier.py"


@st.cache_resource(show_spinner=False, max_entries=3)
def _predictor(kind: str, key: str, weights: str | None, stamp: int, weights_dir: str, home: str):
    """Loaded and warmed up once per process; ``stamp`` (model file mtime) reloads a rewritten run."""
    from core.serve import inference
    from core.runs.store import RunStore

    if kind == "imagenet":
        predictor = inference.load_imagenet(key, weights=weights)
    else:
        predictor = inference.load_run(RunStore().get(key))
    predictor.warm_up()
    return predictor


def load_predictor(kind: str, key: str, weights: str | None = "imagenet"):
    """A ``core.serve.inference.Predictor``: ``kind`` "imagenet" (key: backbone) or "run" (key: run id)."""
    stamp = 0
    if kind == "run":
        from core.runs.store import RunStore

        try:
            stamp = RunStore().get(key).model_path.stat().st_mtime_ns
        except OSError:
            stamp = 0  # load_run explains that the model is missing
    return _predictor(kind, key, weights, stamp, str(settings.weights_dir()), str(settings.home()))


# ---------------------------------------------------------------- label and explore pages
LABEL_PAGE = "app_pages/label.py"
EXPLORE_PAGE = "app_pages/explore.py"


def stage_progress(bar):
    """A ``progress(stage, core.features.cache.ExtractProgress)`` callback that draws into ``bar`` (an st.progress)."""

    def update(stage: str, p) -> None:
        if p.cached:
            text = f"{stage}: {p.total:,} images, features from the cache"
        else:
            eta = f", about {p.eta_s:,.0f} s left" if p.eta_s == p.eta_s and p.images_per_s > 0 else ""
            text = f"{stage}: {p.done:,} of {p.total:,} images ({p.images_per_s:,.1f} images/s{eta})"
        bar.progress(min(p.done / max(p.total, 1), 1.0), text=text)

    return update


def keep_compiled_models_warm() -> None:
    """Stop Streamlit from throwing away TensorFlow's compiled kernels after every rerun.

    After each script run Streamlit calls ``keras.backend.clear_session()``
    (``script_runner._clean_problem_modules``). With TensorFlow that clears the eager
    kernel cache, so every cached model's compiled forward pass is re-instantiated on
    the next click: about 1 s for EfficientNet-Lite0 on 2 idle cores, several seconds
    on a busy machine, which defeats ``st.cache_resource``. Keras 3 runs eagerly and
    has no graph to leak, so the cleanup is replaced by one that keeps the kernels and
    still closes matplotlib figures. Process-wide and idempotent; if Streamlit renames
    the hook, nothing is patched and only the speed-up is lost.
    """
    import sys

    try:
        from streamlit.runtime.scriptrunner import script_runner
    except ImportError:
        return
    current = getattr(script_runner, "_clean_problem_modules", None)
    if current is None or getattr(current, "_tl_keeps_kernels", False):
        return

    def clean_problem_modules() -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            try:
                plt.close("all")
            except Exception:  # noqa: BLE001  as Streamlit's own cleanup: never break a rerun
                pass

    clean_problem_modules._tl_keeps_kernels = True
    script_runner._clean_problem_modules = clean_problem_modules


def square_thumb(path: str, size: int = 160) -> np.ndarray:
    """``thumb`` centred on a square light tile, so grids of photos line up in rows."""
    img = thumb(path, size)
    h, w = img.shape[:2]
    tile = np.full((size, size, 3), 246, np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    tile[top:top + h, left:left + w] = img[:size, :size, :3]
    return tile
