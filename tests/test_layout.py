"""core.layout: the data directory's one map. Team caches at the top, one workspace per user,
and a data directory of the earlier flat layout migrated into the local user's workspace."""

from __future__ import annotations

import json

from core import layout, settings
from core.data.dataset import scan_folder
from core.runs.store import RunStore
from tests.helpers import write_images


def test_each_user_gets_a_workspace_of_their_own(tl_home):
    assert layout.workspace() == tl_home / "users" / "local"
    with settings.session(user="ada@example.org"):
        ada = layout.workspace_dir("runs")
    with settings.session(user="ada.lovelace@example.org"):
        other = layout.workspace_dir("runs")
    assert ada.parent.parent == other.parent.parent == tl_home / "users" and ada != other
    assert layout.owner_of(ada / "x") == layout.user_id("ada@example.org") != layout.owner_of(other)
    assert layout.owner_of(tl_home / "features") is None and layout.cache("features") == tl_home / "features"
    for hostile in ("../../etc", "/", "a/b", "..", ""):
        ws = layout.workspace(hostile, current=False)
        assert ws.parent == tl_home / "users", hostile  # an identity never names a path


def test_a_flat_data_directory_is_migrated_into_the_local_workspace(tl_home, tmp_path):
    """Runs, datasets, inboxes and exports move (not copy) into users/local; runs that trained on a
    moved dataset point at its new place; caches stay where they are; a second start changes nothing."""
    flat_ds = tl_home / "datasets" / "pets"
    for i, cls in enumerate(["cats", "dogs"]):
        write_images(flat_ds / "train" / cls, i, 4, seed=1)
        write_images(flat_ds / "validation" / cls, i, 2, seed=2)
    old_runs = RunStore(tl_home / "runs")
    run = old_runs.create({"strategy": "linear_probe", "dataset": str(flat_ds)}, name="before the move")
    elsewhere = old_runs.create({"strategy": "scratch", "dataset": str(tmp_path / "photos")})
    (tl_home / "inbox" / "pets-1").mkdir(parents=True)
    (tl_home / "features" / "entry").mkdir(parents=True)
    (tl_home / "features" / "entry" / "meta.json").write_text("{}")

    home = layout.home()
    local = tl_home / "users" / "local"
    assert not (tl_home / "runs").exists() and not (tl_home / "datasets").exists()
    assert (local / "inbox" / "pets-1").is_dir() and (tl_home / "features" / "entry" / "meta.json").is_file()
    moved = RunStore().get(run.id)
    assert moved.dir == local / "runs" / run.id and moved.name == "before the move"
    assert moved.config["dataset"] == str(local / "datasets" / "pets")
    assert scan_folder(moved.config["dataset"]).num_classes == 2
    assert json.loads((local / "runs" / elsewhere.id / "config.json").read_text())["dataset"] == str(tmp_path / "photos")
    assert layout.home() == home and {p.name for p in (local / "runs").iterdir()} >= {run.id, elsewhere.id}
