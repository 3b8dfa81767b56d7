"""Attacks of issue 27 that no page lets a visitor aim precisely, tried on the core instead,
judged by the same effects: stored code never imported, a process the run does not own never
signalled, the per-user job limit, a manifest's file outside the weights folder never read,
another user's dataset never relabelled, run ids that are paths, and the memory a tiny 16-bit
PNG of 8000 × 8000 may cost a scan. (The forged scan cache and the relabel destinations that are
paths: tests/test_data.py::test_a_scan_cache_naming_paths_outside_the_folder_is_not_trusted and
tests/test_dataset_builder.py::test_relabel_never_moves_a_file_outside_the_dataset.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from core import settings
from core.errors import AccessDenied, RunError
from core.runs import jobs
from core.runs.store import Run, RunStore, process_start_time
from tests.attack import forge
from tests.helpers import REPO, wait_for, wait_state, worker_log, write_images

pytestmark = pytest.mark.attack

ANN, BOB = "ann@example.org", "bob@example.org"
PNG16_GROWTH_LIMIT_MB = 400  # the scan and the Dataset page's work on one 8000 x 8000 16-bit PNG


def started(run: Run) -> bool:
    return (run.dir / "starts.log").exists()


def test_a_stored_entry_point_is_never_imported(tmp_path, outside, monkeypatch):
    """Attack 1 at its root: a queued run whose config.json names ``"entry": "pwn:go"`` (an
    importable module of the attacker's) is trained by the app's own worker; the module is never
    imported (its marker file never appears) and the run fails for its own reasons."""
    from core.runs import worker

    marker = outside / "pwned"
    (tmp_path / "attack_pwn.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
                                            f"def go(run=None):\n    pathlib.Path({str(marker)!r}).write_text('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = RunStore().create({"strategy": "feature_extraction", "entry": "attack_pwn:go",
                             "dataset": str(tmp_path / "no-such-dataset")})
    before = signal.getsignal(signal.SIGTERM)
    try:
        code = worker.main([str(run.dir)])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not marker.exists(), f"the stored entry point was imported: {marker.read_text()}"
    assert "attack_pwn" not in sys.modules
    assert code == 1 and run.status()["state"] == "failed", run.status()


def test_kill_spares_another_runs_worker(store, monkeypatch):
    """Attack 2: run A's status is forged to name run B's live worker (its pid, start time and
    host). Killing A leaves B's worker alive and B running: a worker is only signalled for its
    own run folder."""
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "2")
    monkeypatch.setenv(settings.MAX_USER_JOBS_ENV, "2")
    a = store.create({"target": "gate", "strategy": "gate"})
    b = store.create({"target": "gate", "strategy": "gate"})
    jobs.pump(store)
    for run in (a, b):
        wait_for(lambda: started(run), 60, f"{run.id}'s worker; log:\n{worker_log(run)}")
    victim = b.status()
    try:
        with a.status_update() as status:
            status.update(pid=victim["pid"], pid_start=victim["pid_start"], host=victim["host"])
        assert jobs.kill(a, reason="forced by the test")
        time.sleep(0.5)
        assert process_start_time(victim["pid"]) == victim["pid_start"], "B's worker was killed through A"
        assert b.status()["state"] == "running" and a.status()["state"] == "failed"
    finally:
        for run in (a, b):
            (run.dir / "go").touch()
    wait_state(b, "done", timeout=60)


def test_one_users_runs_start_one_at_a_time_while_another_users_run_starts(store, monkeypatch):
    """Attack 6 (job limit): with TRANSFER_LAB_MAX_JOBS=4 and MAX_JOBS_PER_USER=1, Ann queues three
    runs and Bob one. Bob's starts beside Ann's first; Ann's others wait and start one at a time
    as hers finish, never two at once."""
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "4")
    monkeypatch.setenv(settings.MAX_USER_JOBS_ENV, "1")
    with settings.session(ANN):
        anns = [RunStore().create({"target": "gate", "strategy": "gate"}, name=f"ann {i}") for i in range(3)]
    with settings.session(BOB):
        bobs = RunStore().create({"target": "gate", "strategy": "gate"}, name="bob")
    assert len({r.dir.parent for r in anns}) == 1 and bobs.dir.parent != anns[0].dir.parent  # two workspaces
    jobs.pump(store)
    for run in (anns[0], bobs):
        wait_for(lambda: started(run), 60, f"{run.name}'s worker; log:\n{worker_log(run)}")
    jobs.pump(store)  # a second pump changes nothing: Ann is at her limit
    time.sleep(1.0)
    assert [r.status()["state"] for r in anns] == ["running", "queued", "queued"]
    for i in range(3):
        running = [r for r in anns if r.status()["state"] == "running"]
        assert running == [anns[i]], [r.status()["state"] for r in anns]
        assert bobs.status()["state"] in ("running", "done")
        wait_for(lambda: started(anns[i]), 60, f"ann {i}'s worker; log:\n{worker_log(anns[i])}")
        (anns[i].dir / "go").touch()
        wait_state(anns[i], "done", timeout=60)
        if i < 2:  # her finishing worker starts her next run
            wait_for(lambda: anns[i + 1].status()["state"] != "queued", 60, f"ann {i + 1} to start")
    (bobs.dir / "go").touch()
    wait_state(bobs, "done", timeout=60)


def test_a_manifest_cannot_make_the_app_read_a_file_outside_the_weights_folder(tmp_path, outside, monkeypatch):
    """Attack 3: a weights-folder manifest whose classes_file is an absolute path, or leads out
    with '..', is not a backbone; the ImageNet class names never come from the outside file."""
    from core.nets import backbones

    names = outside / "names.txt"
    names.write_text("\n".join(f"outside-secret-{i}" for i in range(1000)) + "\n")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "names.txt").write_text("\n".join(f"inside-{i}" for i in range(1000)) + "\n")
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    manifest = {"name": "forged", "input_size": [32, 32], "feature_layer": "top", "predictions_layer": "pred"}
    for i, classes_file in enumerate([str(names), f"../{outside.name}/names.txt", f"../../{names}"]):
        (folder / f"forged{i}.keras").write_bytes(b"not read: the manifest alone is the attack")
        (folder / f"forged{i}.json").write_text(json.dumps({**manifest, "name": f"forged{i}",
                                                            "classes_file": classes_file}))
    (folder / "honest.keras").write_bytes(b"x")
    (folder / "honest.json").write_text(json.dumps({**manifest, "name": "honest", "classes_file": "names.txt"}))
    specs = {s.name: s for s in backbones.list_backbones() if s.family == "local"}
    assert set(specs) == {"honest"}, sorted(specs)  # the control is listed, the forged ones are not
    assert backbones.imagenet_classes(specs["honest"])[0] == "inside-0"
    for spec in backbones.list_backbones():
        assert not spec.classes_file or not spec.classes_file.startswith(str(outside))


def test_another_users_dataset_cannot_be_relabelled(tmp_path):
    """Attack 7 at the core: Bob relabels a photo of Ann's dataset (say, through a dataset object
    his session holds); refused, nothing moves. An admin may."""
    from core.data import builder as db
    from core.data.dataset import scan_folder

    with settings.session(ANN):
        folder = db.create_dataset("pets", ["cats", "dogs"])
        write_images(folder / "cats", 0, 3)
        write_images(folder / "dogs", 1, 3)
        ds = scan_folder(folder, use_cache=False)
    photo = next(r.path for r in ds.records if r.label == "cats")
    with settings.session(BOB), pytest.raises(AccessDenied, match="belongs to someone else"):
        db.relabel(ds, photo, "dogs")
    assert (folder / "cats" / photo.split("/")[-1]).is_file()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.ADMINS_ENV, "boss@example.org")
        with settings.session("boss@example.org"):
            moved = db.relabel(ds, photo, "dogs")
    assert moved.parent.name == "dogs" and moved.is_file()


def test_behind_the_disabled_buttons_the_core_refuses_too(monkeypatch):
    """Attack 7: the pages disable Cancel and Force stop on another user's run, but a crafted
    request could still reach the handlers: as Bob, cancelling, killing, deleting or renaming
    Ann's runs raises AccessDenied and changes nothing; Boss (an admin) may."""
    with settings.session(ANN):
        queued = RunStore().create({"strategy": "linear_probe"}, name="ann queued")
        running = RunStore().create({"strategy": "linear_probe"}, name="ann running")
        running.set_status("running", pid=None, host=None, heartbeat=time.time())
    with settings.session(BOB):
        for attempt in (lambda: jobs.cancel(queued), lambda: jobs.kill(running), lambda: RunStore().delete(queued.id),
                        lambda: RunStore().rename(queued.id, "mine now")):
            with pytest.raises(AccessDenied, match="belongs to someone else"):
                attempt()
    assert queued.status()["state"] == "queued" and not queued.cancel_requested() and queued.name == "ann queued"
    assert running.status()["state"] == "running"
    monkeypatch.setenv(settings.ADMINS_ENV, "boss@example.org")
    with settings.session("boss@example.org"):
        assert jobs.cancel(queued) == "cancelled"
        RunStore().delete(queued.id)
    assert not queued.dir.exists()


@pytest.mark.parametrize("run_id", ["..", "../../etc", "20260101-000000-a-beef/../../x", "/etc/passwd",
                                    "20260101-000000-a-beef\x00", ""])
def test_a_run_id_that_is_a_path_finds_nothing(run_id):
    """A run id from a visitor (a table selection, a query) that is a path is refused before any
    folder is looked up."""
    RunStore().create({"strategy": "linear_probe"})
    with pytest.raises(RunError, match="is not a run id"):
        RunStore().get(run_id)


MEASURE = """
import gc, json, sys
def mb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) // 1024
def start():
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM back to the current VmRSS (Linux 4.0+)
        fh.write("5")
    return mb("VmRSS")
from core.data import stats
from core.data.dataset import scan_folder
growth = {}
at = start(); ds = scan_folder(sys.argv[1], use_cache=False); growth["scan"] = mb("VmHWM") - at
at = start(); stats.image_frame(ds); growth["sizes"] = mb("VmHWM") - at
at = start(); stats.duplicates(ds); growth["duplicates"] = mb("VmHWM") - at
big = [r.path for r in ds.records if r.path.endswith("big16.png")]
at = start()
for path in big:
    stats.thumbnail(path, 160)
growth["thumbnail"] = mb("VmHWM") - at
print(json.dumps({"growth_mb": growth, "listed": bool(big), "bad": [b.reason for b in ds.bad_files]}))
"""


def test_a_tiny_16_bit_png_of_8000_by_8000_costs_a_scan_little_memory(tmp_path):
    """Attack 6 (memory): a 150 kB 16-bit greyscale PNG of 8000 x 8000 in a class folder. In a fresh
    process, each step a visitor's scan causes (the scan, the Dataset page's sizes, duplicates and
    thumbnail) raises the peak resident memory (VmHWM, reset before each step) by less than 400 MB
    above what the process held: the image is refused or reduced by its pixel count before any
    full-size float copy (one full-size float64 copy alone is 512 MB; the 16-bit pixels, 128 MB)."""
    folder = tmp_path / "huge"
    forge.write_png16(folder / "a" / "big16.png")
    write_images(folder / "a", 0, 3)
    write_images(folder / "b", 1, 3)
    assert (folder / "a" / "big16.png").stat().st_size < 300_000
    out = subprocess.run([sys.executable, "-c", MEASURE, str(folder)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n8000 x 8000 16-bit PNG: peak memory growth {report}")
    assert max(report["growth_mb"].values()) < PNG16_GROWTH_LIMIT_MB, report
