"""core.access and the session layer of core.settings: typed paths stay inside the allowed
roots whatever they are made of (``..``, symlinks, ``~``) and out of the server's storage,
each session is its own user, and only owners (or admins) change a workspace's things."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core import access, layout, settings
from core.errors import AccessDenied, StorageError
from tests.helpers import wait_for


@pytest.fixture
def roots(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An allowed root with a dataset folder in it, and a forbidden folder beside it."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "photos" / "cats").mkdir(parents=True)
    (outside / "secret").mkdir(parents=True)
    monkeypatch.setenv(settings.ROOTS_ENV, str(allowed))
    return allowed, outside


def test_inside_is_accepted_and_resolved(roots):
    allowed, _ = roots
    assert access.check_path(allowed / "photos") == (allowed / "photos").resolve()
    assert access.check_path(str(allowed / "photos" / ".." / "photos" / "cats")) == (allowed / "photos" / "cats")
    assert access.check_path(allowed) == allowed.resolve()  # the root itself
    assert access.check_path(allowed / "not-yet-made") == allowed / "not-yet-made"  # a data directory to create


def test_outside_is_refused_naming_the_roots(roots):
    allowed, outside = roots
    with pytest.raises(AccessDenied) as err:
        access.check_path(outside / "secret")
    text = str(err.value)
    assert str(outside / "secret") in text and str(allowed) in text and settings.ROOTS_ENV in text
    for path in ("/etc", "/", "/root/.ssh"):
        assert not access.allowed(path)


def test_dotdot_escape_is_refused(roots):
    allowed, outside = roots
    typed = f"{allowed}/photos/../../outside/secret"
    with pytest.raises(AccessDenied, match="outside the folders this server allows"):
        access.check_path(typed)
    # a sibling whose name starts with the root's is not inside it
    (allowed.parent / "allowed-not").mkdir()
    assert not access.allowed(allowed.parent / "allowed-not")


def test_symlink_pointing_outside_is_refused(roots):
    allowed, outside = roots
    (allowed / "link").symlink_to(outside / "secret")
    with pytest.raises(AccessDenied) as err:
        access.check_path(allowed / "link")
    assert f"it leads to {outside / 'secret'}" in str(err.value)
    (allowed / "inner").symlink_to(allowed / "photos")  # a link that stays inside is fine
    assert access.check_path(allowed / "inner") == allowed / "photos"


def test_folder_with_a_link_inside_leading_out_is_refused(roots):
    allowed, outside = roots
    (outside / "secret" / "a.png").write_bytes(b"x")
    (allowed / "photos" / "dogs").symlink_to(outside / "secret")  # a linked class folder
    with pytest.raises(AccessDenied) as err:
        access.check_folder(allowed / "photos")
    assert "dogs" in str(err.value) and str(outside / "secret") in str(err.value)
    (allowed / "photos" / "dogs").unlink()
    (allowed / "photos" / "cats" / "x.png").symlink_to(outside / "secret" / "a.png")  # a linked file, deeper
    assert not access.allowed(outside)
    with pytest.raises(AccessDenied):
        access.check_folder(allowed / "photos")
    # non-recursive (a weights folder): only its own entries count
    assert access.check_folder(allowed / "photos", recursive=False) == allowed / "photos"


def test_link_cycle_ends(roots):
    allowed, _ = roots
    (allowed / "photos" / "cats" / "loop").symlink_to(allowed / "photos")
    assert access.check_folder(allowed / "photos") == allowed / "photos"


def test_default_roots_are_the_data_directory_and_home(monkeypatch, tl_home):
    monkeypatch.delenv(settings.ROOTS_ENV, raising=False)
    assert settings.data_roots() == [tl_home.resolve(), Path.home().resolve()]
    monkeypatch.setenv(settings.ROOTS_ENV, f"/srv/a{os.pathsep} /srv/b {os.pathsep}{os.pathsep}/srv/a")
    assert settings.data_roots() == [Path("/srv/a"), Path("/srv/b")]
    own = layout.workspace().resolve()
    assert access.allowed_roots() == [Path("/srv/a"), Path("/srv/b"), own]  # and the caller's own workspace


def test_the_servers_storage_is_not_a_typed_path_but_the_own_workspace_is(tl_home):
    """Inside the data directory only the caller's workspace may be typed: not the run store,
    not the caches, not another user's workspace, even though the roots contain them all."""
    with settings.session(user="ada@example.org"):
        own = layout.workspace_dir("datasets")
        assert access.check_path(own) == own.resolve()
    with settings.session(user="bob@example.org"):
        other_runs = layout.workspace_dir("runs")
    for path in (tl_home, layout.cache("features"), layout.cache("scans"), other_runs, other_runs.parent):
        with settings.session(user="ada@example.org"):
            assert not access.allowed(path), path


def test_only_owners_and_admins_may_change(monkeypatch):
    with settings.session(user="ada@example.org"):
        hers = layout.workspace_dir("runs") / "r1"
    with settings.session(user="bob@example.org"):
        assert not access.may_change(hers)
        with pytest.raises(AccessDenied, match="belongs to someone else"):
            access.check_may_change(hers, "Run 'r1'")
    with settings.session(user="ada@example.org"):
        assert access.may_change(hers)
    monkeypatch.setenv(settings.ADMINS_ENV, "root@example.org, bob@example.org")
    with settings.session(user="bob@example.org"):
        assert access.may_change(hers)  # an admin
    assert access.may_change(hers)  # no sign-in (the one local user, the command line)


def test_empty_path_is_refused():
    with pytest.raises(AccessDenied, match="No path"):
        access.check_path("  ")


def test_a_session_is_its_own_user_and_touches_no_environment(tl_home):
    theirs: dict = {}
    before = dict(os.environ)
    with settings.session(user="ada@example.org"):
        assert settings.current_user() == "ada@example.org"
        assert layout.workspace().parent == tl_home / layout.USERS
        worker = threading.Thread(target=lambda: theirs.update(user=settings.current_user(), ws=layout.workspace()))
        worker.start()
        worker.join()
    assert theirs == {"user": None, "ws": tl_home / layout.USERS / layout.LOCAL_USER_ID}  # another thread: local
    assert settings.current_user() is None
    assert dict(os.environ) == before


def test_a_broken_provider_denies_instead_of_granting(tmp_path):
    local = threading.local()
    settings.set_session_provider(lambda: getattr(local, "session", None))
    try:
        local.session = settings.Session(user="a@x")
        seen = {}
        worker = threading.Thread(target=lambda: seen.update(user=settings.current_user()))
        worker.start()
        worker.join()
        assert settings.current_user() == "a@x" and seen["user"] is None
        settings.set_session_provider(lambda: 1 / 0)  # a broken provider: no crash, and no rights
        assert settings.current().denied and not access.may_change(tmp_path)
    finally:
        settings.set_session_provider(None)


def test_run_records_the_signed_in_user(tmp_path):
    from core.runs import compare
    from core.runs.store import RunStore

    store = RunStore(tmp_path / "runs")
    anonymous = store.create({"strategy": "linear_probe", "seed": 1})
    with settings.session(user="grace@example.org"):
        signed = store.create({"strategy": "linear_probe", "seed": 1})
    assert "started_by" not in anonymous.config and signed.config["started_by"] == "grace@example.org"
    table = compare.comparison_table(store.list())
    assert table.set_index("run_id").loc[signed.id, "started_by"] == "grace@example.org"
    assert table.set_index("run_id")["started_by"].isna().sum() == 1


def test_server_config_lists_values_and_where_they_come_from(monkeypatch, tl_home):
    monkeypatch.setenv(settings.MIN_FREE_ENV, "123")
    monkeypatch.setenv("TRANSFER_LAB_SOMETHING_NEW", "x")
    rows = {r["variable"]: r for r in settings.server_config()}
    assert rows[settings.HOME_ENV]["value"] == str(tl_home) and rows[settings.HOME_ENV]["from"] == "environment"
    assert rows[settings.MIN_FREE_ENV]["value"] == "123"
    assert rows[settings.ADDRESS_ENV]["from"] in ("default", "environment")
    assert "TRANSFER_LAB_SOMETHING_NEW" not in rows  # unknown variables are not shown to visitors


def test_bad_margin_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(settings.MIN_FREE_ENV, "lots")
    with pytest.raises(StorageError, match="TRANSFER_LAB_MIN_FREE_MB must be a number"):
        settings.min_free_mb()
    monkeypatch.setenv(settings.MIN_FREE_ENV, "-5")
    with pytest.raises(StorageError, match="0 or more"):
        settings.min_free_mb()


def test_a_worker_trains_with_the_servers_folders_in_the_owners_workspace(store, tl_home, local_weights):
    import json

    from core.runs import jobs

    with settings.session(user="ada@example.org"):
        run = jobs.submit(store.create({"target": "record_settings"}))
        assert run.dir.parent == layout.workspace_dir("runs")
    wait_for(lambda: run.is_finished, timeout=120, what="the run to finish")
    assert run.status()["state"] == "done", run.status()
    seen = json.loads((run.dir / "seen.json").read_text())
    assert seen == {"home": str(tl_home), "weights": str(local_weights), "user": None}
