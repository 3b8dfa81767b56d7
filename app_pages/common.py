"""Shared by every page (this module is not a page): session-state keys, the
sidebar, cached loaders and the friendly error display.

Nothing here imports TensorFlow at import time: the first page must render
without it. Predictors load once per process through ``st.cache_resource``; backbones
through ``core.nets.loaded`` (the one backbone cache the analyses share too).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from core import access, layout, serving, settings
from core.errors import TransferLabError

# Session-state keys other pages may read.
DATASET = "tl_dataset"  # the core.data.dataset.Dataset in use (absent until one is scanned)
BACKBONE = "tl_backbone"  # registry name picked in the sidebar
PENDING = "tl_pending"  # source the Dataset page should open next: "sample" or (root, name)
USER = "tl_user"  # who is signed in (email, else name), with sign-in configured

MESSAGES = "tl_messages"  # {place: [(kind, text)]}: shown once, after the rerun an action caused
ICONS = {"success": ":material/check_circle:", "error": ":material/error:", "warning": ":material/warning:",
         "info": ":material/info:"}

DATASET_PAGE = "app_pages/dataset.py"
BACKBONES_PAGE = "app_pages/backbones.py"


@contextmanager
def friendly_errors(stop: bool = False):
    """Show a ``TransferLabError`` as ``st.error`` (its message is written for users); with ``stop``, the
    page ends there (what follows needs what failed)."""
    try:
        yield
    except TransferLabError as exc:
        st.error(plain(exc), icon=":material/error:")
        if stop:
            st.stop()


def say(kind: str, text, place: str = "page") -> None:
    """Show ``text`` once, at ``show_messages(place)`` after the rerun an action caused (button callbacks run
    before the page draws, so they cannot show anything themselves); as plain text: messages name classes,
    files, runs and datasets."""
    st.session_state.setdefault(MESSAGES, {}).setdefault(place, []).append((kind, plain(text)))


def show_messages(place: str = "page") -> None:
    """The messages ``say`` left for ``place``, each shown once."""
    for kind, text in st.session_state.get(MESSAGES, {}).pop(place, []):
        getattr(st, kind)(text, icon=ICONS[kind])


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$&])")
_JOINER = "\u2060"  # WORD JOINER: invisible, and no letter, so no autolink pattern runs across it
_LEADING_BLOCK = re.compile(r"^(\d*)([-+=.)])")


def plain(text) -> str:
    """``text`` escaped for Streamlit markdown, so it shows as the characters it holds.

    Anything a visitor can name (runs, classes, files, datasets, stored reasons) goes
    through here before it meets ``st.markdown``/``st.caption``/a label: otherwise a
    name such as ``![x](http://host/)`` or ``:red[...]`` would draw an image, a link or
    styling in every session that lists it. Backslash-escaped: what opens links, images,
    emphasis, code, HTML, entities, tables and maths, and a leading list or heading marker.
    ``:`` is written as a character reference (Streamlit reads ``:red[``/``:material/…:``
    past a backslash), and an invisible word joiner goes before ``:`` and ``@`` and after
    ``www``: GFM links bare addresses and e-mails in the text *after* escapes are read, so
    only a character inside ``http://``, ``www.`` or ``a@b`` stops it (tried in Chromium:
    ``tests/attack``). Newlines become spaces, so a name cannot start a block of its own.
    """
    flat = " ".join(str(text).split())
    flat = _MARKDOWN_SPECIAL.sub(r"\\\1", flat)
    flat = flat.replace(":", f"{_JOINER}&#58;").replace("@", f"{_JOINER}@").replace("www", f"www{_JOINER}")
    return _LEADING_BLOCK.sub(r"\1\\\2", flat)


def chart_text(frame, *columns):
    """``frame`` with its text ``columns`` (class, file names) HTML-escaped for a Plotly chart:
    Plotly draws ``<a href>``, ``<b>``... in labels and hover text, and a visitor names these."""
    import html

    return frame.assign(**{c: frame[c].map(lambda v: html.escape(str(v))) for c in columns})


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 file', '3 files': counts read as sentences."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def current_dataset():
    return st.session_state.get(DATASET)


def option_key(preset: str, strategy: str, field: str) -> str:
    """The session-state key of a Strategies-page option (``strategy`` "all": the shared ones)."""
    return f"tl_opt_{preset}_{strategy}_{field}"


def current_backbone() -> str:
    if BACKBONE not in st.session_state:
        st.session_state[BACKBONE] = default_backbone()
    return st.session_state[BACKBONE]


def default_backbone() -> str:
    """``core.nets.backbones.DEFAULT_BACKBONE`` (the shipped offline weights) where it is installed,
    else the first backbone usable offline, else a small one that downloads quickly."""
    from core.nets import default_backbone as default

    return default()


# ---------------------------------------------------------------- session and sign-in

def _session_settings() -> settings.Session | None:
    """Who the current Streamlit session is, for ``core.settings`` (None outside a script run:
    a thread of the server that serves no session acts as the server)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return settings.Session(st.session_state.get(USER))


def sign_in_providers() -> list[str | None] | None:
    """The OpenID Connect providers of ``[auth]`` in ``.streamlit/secrets.toml`` (``[None]``: the
    unnamed one), or None when sign-in is not configured."""
    from streamlit.errors import StreamlitSecretNotFoundError

    try:
        auth = st.secrets.get("auth")
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return None
    if not auth:
        return None
    named = [k for k, v in auth.items() if hasattr(v, "items")]
    return named or [None]


def start_session() -> None:
    """Bind core's settings to this session and, when sign-in is configured, require it
    (called by the shell before the navigation, so no page draws for a visitor who is not in)."""
    settings.set_session_provider(_session_settings)
    providers = sign_in_providers()
    if providers is None:
        st.session_state.pop(USER, None)
        refusal = serving.open_without_sign_in_refusal(st.get_option("server.address"))
        if refusal:
            st.error(refusal, icon=":material/lock:")
            st.stop()
        return
    weak = serving.weak_cookie_secret(st.secrets["auth"].get("cookie_secret"))
    if weak:
        st.error(weak, icon=":material/lock:")
        st.stop()
    try:
        import authlib  # noqa: F401  (st.login needs it; without it the app stays closed, never open)
    except ImportError:
        st.error("Sign-in is configured in .streamlit/secrets.toml but Authlib is not installed on the server: "
                 "run `.venv/bin/pip install -r requirements.txt`.", icon=":material/lock:")
        st.stop()
    if not st.user.get("is_logged_in", False):  # fail closed: no answer means not signed in
        st.session_state.pop(USER, None)
        st.title("Transfer Lab")
        st.write("This server is shared by a team: sign in to use it. Your runs are recorded under your name.")
        for provider in providers:
            st.button(f"Sign in with {provider}" if provider else "Sign in", on_click=st.login, args=(provider,),
                      type="primary", icon=":material/login:", key=f"tl_login_{provider or 'default'}")
        st.stop()
    st.session_state[USER] = st.user.get("email") or st.user.get("name") or st.user.get("sub") or "signed in"


def signed_in_panel() -> None:
    """Who is signed in, with a sign-out button (nothing without sign-in)."""
    user = st.session_state.get(USER)
    if not user:
        return
    name = st.user.get("name")
    shown = f"{plain(name)} ({plain(user)})" if name and name != user else plain(user)
    st.markdown(f"**Signed in:** {shown}")
    st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="tl_logout")


def checked_folder(path: str, recursive: bool = True) -> Path | None:
    """A typed folder, resolved and inside the server's allowed roots, or None after an
    ``st.error`` that names the roots (``core.access``)."""
    try:
        return access.check_folder(path, recursive=recursive)
    except TransferLabError as exc:
        st.error(plain(exc), icon=":material/block:")
        return None


# ---------------------------------------------------------------- scanning

def scan(root, name: str | None = None):
    """Scan ``root`` with a progress bar; keep the dataset in the session. None on error."""
    from core.data import scan_folder

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
    from core.data import thumbnail as make

    return np.asarray(make(path, size))


def thumb(path: str, size: int = 160) -> np.ndarray:
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = 0  # stats.thumbnail draws the "cannot show" tile
    return thumbnail(path, size, mtime)


def stored_thumb(path: str, stored_in, size: int = 160) -> np.ndarray:
    """``thumb`` of a path read back from a stored file (a run's predictions): drawn only when it
    lies inside the allowed roots or the workspace that holds ``stored_in``; elsewhere the crossed
    "cannot show" tile, so no stored file can make the server show a photo from outside."""
    try:
        access.check_stored(path, *filter(None, [layout.workspace_of(stored_in)]))
    except TransferLabError:
        path = ""
    return thumb(path, size)


def show_thumb(path: str, root: str, caption: str = "", size: int = 160) -> None:
    """One thumbnail with its path relative to the dataset root as the caption."""
    rel = os.path.relpath(path, root)
    st.image(thumb(path, size), caption=f"{caption}{plain(rel)}", width=size)


# ---------------------------------------------------------------- sidebar

def _server_settings_table() -> None:
    """The server-wide configuration, read-only: what only whoever runs the server can change."""
    st.markdown("**Server configuration** (read-only: environment variables of whoever runs the server)")
    st.markdown("\n".join(
        f"- `{row['variable']}` = {plain(row['value'])}" + (" *(default)*" if row["from"] == "default" else "")
        + (f"  \n  :gray[{row['what']}]" if row["what"] else "")
        for row in settings.server_config()))


def _backbone_names() -> list[str]:
    from core.nets import list_backbones

    return [s.name for s in list_backbones()]


def dataset_summary(slot) -> None:
    """The current dataset, drawn into the sidebar slot that ``sidebar()`` returned."""
    ds = current_dataset()
    with slot.container():
        if ds is None:
            st.markdown("**Dataset:** none yet")
            st.page_link(DATASET_PAGE, label="Choose a dataset", icon=":material/photo_library:")
        else:
            st.markdown(f"**Dataset:** {plain(ds.name)}")
            st.caption(f"{plural(len(ds.records), 'image')} · {plural(ds.num_classes, 'class', 'classes')} · "
                       f"{len(ds.bad_files)} unreadable")


def sidebar():
    """The state every page shares: backbone, data directory and settings; returns the
    slot at the top where ``dataset_summary`` goes once the page has run."""
    from core.nets import list_backbones, weights_location

    with st.sidebar:
        slot = st.empty()
        specs = list_backbones()
        offline = {s.name for s in specs if weights_location(s) is not None}
        names = [s.name for s in specs]
        display = {s.name: s.display_name for s in specs}
        current_backbone()
        st.selectbox(
            "Backbone",
            names,
            key=BACKBONE,
            format_func=lambda n: ("✓ " if n in offline else "") + display.get(n, n),
            help="The ImageNet network whose features every page uses. "
            "✓: its weights are on this machine (works offline); the others download on first use.",
        )
        if st.session_state[BACKBONE] in offline:
            st.caption("✓ ImageNet weights on this machine")
        else:
            st.caption("ImageNet weights download on first use")
        try:
            home = layout.workspace()
        except TransferLabError as exc:
            home = settings.server_home()
            st.error(f"Data directory not usable: {plain(exc)}")
        st.caption(f"Your workspace: {plain(home)}")
        from core.nets import engine  # no TensorFlow import: OpenVINO's device query only

        st.caption(f"Engine: {engine.describe_for_users()}")
        from core.train import precision  # no TensorFlow import: CPU flags and device nodes only

        st.caption(f"Training: {precision.describe_for_users()}")
        signed_in_panel()

        with st.expander("Settings", icon=":material/settings:"):
            st.caption("Your uploads, datasets and runs are kept in your workspace; feature caches are shared "
                       "by the team. The folders below are the server's: only whoever runs it can change them. "
                       "Folders you may type: " + ", ".join(plain(r) for r in access.allowed_roots()))
            _server_settings_table()
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
    from core.runs import RunStore

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
        from core.runs import RunStore

        try:
            stamp = RunStore().get(key).model_path.stat().st_mtime_ns
        except OSError:
            stamp = 0  # load_run explains that the model is missing
    return _predictor(kind, key, weights, stamp, str(settings.weights_dir()), str(layout.home()))


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


STREAMLIT_CLEANUP_HOOK = "_clean_problem_modules"  # in streamlit.runtime.scriptrunner.script_runner


def keep_compiled_models_warm() -> bool:
    """Stop Streamlit from throwing away TensorFlow's compiled kernels after every rerun.

    After each script run Streamlit calls ``keras.backend.clear_session()``
    (``script_runner._clean_problem_modules``). With TensorFlow that clears the eager
    kernel cache, so every cached model's compiled forward pass is re-instantiated on
    the next click: about 1 s for EfficientNet-Lite0 on 2 idle cores, several seconds
    on a busy machine, which defeats ``st.cache_resource``. Keras 3 runs eagerly and
    has no graph to leak, so the cleanup is replaced by one that keeps the kernels and
    still closes matplotlib figures.

    Streamlit has no supported way to turn that cleanup off (no config option, no
    callback; it is unconditional up to 1.67 at least), so this function is the one
    place that touches the private hook; ``tests/test_streamlit_hook.py`` fails when
    Streamlit renames it, stops calling it, or stops clearing Keras. Process-wide and
    idempotent. Returns whether the kernels are kept; when the hook is gone it logs a
    warning and the app runs on, only slower.
    """
    import logging
    import sys

    try:
        from streamlit.runtime.scriptrunner import script_runner
    except ImportError:
        return False
    current = getattr(script_runner, STREAMLIT_CLEANUP_HOOK, None)
    if getattr(current, "_tl_keeps_kernels", False):
        return True
    if not callable(current):
        logging.getLogger(__name__).warning(
            "Streamlit %s has no script_runner.%s: compiled models are rebuilt after every rerun.",
            st.__version__, STREAMLIT_CLEANUP_HOOK)
        return False

    def clean_problem_modules() -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            try:
                plt.close("all")
            except Exception:  # noqa: BLE001  as Streamlit's own cleanup: never break a rerun
                pass

    clean_problem_modules._tl_keeps_kernels = True
    clean_problem_modules.streamlit_cleanup = current  # Streamlit's own, for the tests
    setattr(script_runner, STREAMLIT_CLEANUP_HOOK, clean_problem_modules)
    return True


def square_thumb(path: str, size: int = 160) -> np.ndarray:
    """``thumb`` centred on a square light tile, so grids of photos line up in rows."""
    img = thumb(path, size)
    h, w = img.shape[:2]
    tile = np.full((size, size, 3), 246, np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    tile[top:top + h, left:left + w] = img[:size, :size, :3]
    return tile
