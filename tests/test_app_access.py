"""AppTests: paths typed into the app stay inside TRANSFER_LAB_DATA_ROOTS. On the Dataset
page's "Local folder", the Label page's "Folder of unlabelled photos" and the Settings
panel's weights folder (and data directory), a path outside the roots, a ``..`` escape and
a symlink leading outside are each refused with the message naming the roots, nothing is
read from there; a path inside works."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from tests.helpers import REPO, unescaped, write_images

APP = str(REPO / "streamlit_app.py")
REFUSED = "is outside the folders this server allows"


@pytest.fixture
def tree(tmp_path, monkeypatch, tiny_weights) -> dict[str, Path]:
    """allowed/photos (a 2-class dataset), allowed/weights (a local backbone), and outside/
    with a dataset and weights of its own; only allowed/ is a root."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for base in (allowed, outside):
        for i, cls in enumerate(["cats", "dogs"]):
            write_images(base / "photos" / cls, i, 6, seed=i)
        (base / "weights").mkdir(parents=True)
        for f in tiny_weights.iterdir():
            (base / "weights" / f.name).symlink_to(f) if base is outside else (base / "weights" / f.name).write_bytes(
                f.read_bytes())
    (allowed / "escape").symlink_to(outside / "photos")
    (allowed / "escape_weights").symlink_to(outside / "weights")
    monkeypatch.setenv(settings.ROOTS_ENV, str(allowed))
    monkeypatch.setenv(settings.HOME_ENV, str(allowed / "home"))
    return {"inside": allowed / "photos", "outside": outside / "photos",
            "dotdot": Path(f"{allowed}/photos/../../outside/photos"), "symlink": allowed / "escape",
            "weights_inside": allowed / "weights", "weights_outside": outside / "weights",
            "weights_dotdot": Path(f"{allowed}/weights/../../outside/weights"),
            "weights_symlink": allowed / "escape_weights", "allowed": allowed}


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def app(page: str | None = None) -> AppTest:
    at = ok(AppTest.from_file(APP, default_timeout=240).run())
    return ok(at.switch_page(page).run()) if page else at


def errors(at: AppTest, where=None) -> str:
    return unescaped(" ".join(e.value for e in (where or at).error))


@pytest.mark.parametrize("case", ["outside", "dotdot", "symlink"])
def test_dataset_local_folder_refuses(tree, case):
    at = app("app_pages/dataset.py")
    at.radio(key="tl_source").set_value("Local folder").run()
    at.text_input(key="tl_folder").set_value(str(tree[case])).run()
    ok(next(b for b in at.button if b.label == "Scan folder").click().run())
    text = errors(at)
    assert REFUSED in text and str(tree["allowed"]) in text and settings.ROOTS_ENV in text
    assert "tl_dataset" not in at.session_state  # nothing was scanned from there
    if case == "symlink":
        assert f"it leads to {tree['outside']}" in text


def test_dataset_local_folder_inside_works(tree):
    at = app("app_pages/dataset.py")
    at.radio(key="tl_source").set_value("Local folder").run()
    at.text_input(key="tl_folder").set_value(str(tree["inside"])).run()
    ok(next(b for b in at.button if b.label == "Scan folder").click().run())
    assert REFUSED not in errors(at)
    assert at.session_state["tl_dataset"].root == str(tree["inside"])
    assert {m.label: m.value for m in at.metric}["Usable images"] == "12"


def label_folder(tree, case) -> AppTest:
    from core.data import builder

    builder.create_dataset("pets", ["cats", "dogs"])  # the page labels photos into a dataset of its own
    at = app("app_pages/label.py")
    at.radio(key="tl_lab_src").set_value("Folder on this machine")
    ok(at.run())
    ok(at.text_input(key="tl_lab_inbox_path").set_value(str(tree[case])).run())
    return ok(next(b for b in at.button if b.label == "Use this folder").click().run())


@pytest.mark.parametrize("case", ["outside", "dotdot", "symlink"])
def test_label_folder_refuses(tree, case, monkeypatch):
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(tree["weights_inside"]))
    at = label_folder(tree, case)
    text = errors(at)
    assert REFUSED in text and str(tree["allowed"]) in text
    assert "tl_lab_inbox" not in at.session_state and not any("photos** to label" in c.value for c in at.caption)


def test_label_folder_inside_works(tree, monkeypatch):
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(tree["weights_inside"]))
    at = label_folder(tree, "inside")
    assert REFUSED not in errors(at)
    assert any("12 photos" in c.value for c in at.caption)


def test_who_started_a_run_shows_in_the_comparison_and_on_the_curves_page(tmp_path):
    """A run created in a signed-in session (core.settings.session, as the app's provider does)
    carries started_by; the Strategies table shows a "started by" column, the curves page a caption.
    Without any signed-in run the column stays hidden, as before sign-in existed."""
    from core.runs import jobs
    from core.runs.store import RunStore

    store = RunStore()
    plain = store.create({"strategy": "linear_probe", "seed": 1, "dataset": str(tmp_path)}, name="anonymous")
    jobs.cancel(plain)
    at = app("app_pages/strategies.py")
    (table,) = [d for d in at.dataframe if "run_id" in d.value.columns]
    assert "started_by" not in list(table.proto.column_order)

    with settings.session(user="grace@example.org"):
        run = store.create({"strategy": "linear_probe", "seed": 2, "dataset": str(tmp_path)}, name="graces")
    jobs.cancel(run)
    at = app("app_pages/strategies.py")
    (table,) = [d for d in at.dataframe if "run_id" in d.value.columns]
    assert list(table.proto.column_order)[:2] == ["name", "started_by"]
    assert table.value.set_index("run_id").loc[run.id, "started_by"] == "grace@example.org"
    at.session_state["tl_curves_runs"] = [run.id]
    ok(at.switch_page("app_pages/curves.py").run())
    assert "Started by **grace@example.org**." in [unescaped(c.value) for c in at.caption]


AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "k3Q9-vXb7_Lm2Pz8RtYw4NcE6uHs1JdF0aGo5iKe", "client_id": "lab",
        "client_secret": "x", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def test_with_sign_in_configured_a_visitor_sees_only_the_sign_in_screen(tl_home):
    """[auth] in the secrets, nobody signed in: no page, no sidebar, no data directory shown
    (the browser test signs in for real); without [auth] the app opens as it always did."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = AUTH
    ok(at.run())
    assert [b.label for b in at.button] == ["Sign in"] and [t.value for t in at.title] == ["Transfer Lab"]
    assert "sign in to use it" in " ".join(m.value for m in at.markdown)
    assert not at.sidebar.children and "tl_user" not in at.session_state
    assert not any(str(tl_home) in c.value for c in at.caption)
    ok(at.switch_page("app_pages/dataset.py").run())  # a page's own URL does not get past it
    assert [b.label for b in at.button] == ["Sign in"] and not at.radio

    plain = app()
    assert "Sign in" not in [b.label for b in plain.button] and plain.sidebar.children
    assert not any("Signed in" in m.value for m in plain.sidebar.markdown)


def test_named_providers_each_get_a_button():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"],
                          "google": {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")},
                          "okta": {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}}
    ok(at.run())
    assert [b.label for b in at.button] == ["Sign in with google", "Sign in with okta"]


def test_sign_in_configured_without_authlib_keeps_the_app_shut(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "authlib", None)  # as if it were not installed: `import authlib` fails
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = AUTH
    ok(at.run())
    assert "Authlib is not installed" in errors(at) and not at.button and not at.sidebar.children
