"""The ``cluster`` tier: a real two-node Ray cluster on this machine (``ray start --head`` and a
second ``ray start --address``, one CPU each), started once for the module and stopped at the end
whatever happens. Runs dispatched to it (``TRANSFER_LAB_RAY_ADDRESS``) end as local runs do,
cancel, force-stop and a killed worker end as they should, and a sharded feature extraction
gives the local extraction's bytes, a killed shard retried, or no entry at all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import free_port
from benchmarks.ray_nodes import local_ray_cluster, processes_of
from core import ray_client, settings
from core.runs import cluster, jobs
from core.runs.store import Run, pid_alive
from core.train.strategies import StrategyConfig
from tests.helpers import make_local_backbone, wait_for, wait_state, worker_log, write_images

pytestmark = pytest.mark.cluster

TINY = dict(strategy="scratch", input_size=32, scratch_filters=(8, 16), head_units=8, dropout=0.0)



def test_without_a_cluster_ray_is_never_imported_and_an_unreachable_one_is_said_fast(tmp_path, monkeypatch):
    code = ("import sys; from core.runs import jobs, compare, store as run_store; from core.runs.store import RunStore; "
            "from core.features import cache, sharded; store = RunStore(sys.argv[1]); "
            "run_store.WORKER_MODULE = 'tests.jobs_worker'; "
            "run = store.create({'target': 'epochs', 'epochs': 1}); jobs.submit(run); "
            "compare.comparison_table(store.list()); assert sharded.plan(10**6, 32) is None; "
            "print('ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != settings.RAY_ADDRESS_ENV}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
    from core.errors import ClusterError
    from core.runs.store import RunStore

    (local,) = RunStore(tmp_path / "runs").list()
    assert wait_state(local, "done", "failed", timeout=60)["state"] == "done"  # a local worker ran it

    monkeypatch.setenv(settings.RAY_ADDRESS_ENV, f"127.0.0.1:{free_port()}")  # nobody listens there
    monkeypatch.setattr(ray_client, "_failed", None)
    store = RunStore(tmp_path / "runs2")
    run = store.create({"target": "epochs", "epochs": 1})
    start = time.monotonic()
    with pytest.raises(ClusterError, match="Cannot reach the Ray cluster at 127.0.0.1:.*TRANSFER_LAB_RAY_ADDRESS"):
        jobs.submit(run)
    assert time.monotonic() - start < 10
    assert run.status()["state"] == "queued"  # it waits for the cluster, it is not failed


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes on this machine, one CPU each; this process connected to them as a driver."""
    with local_ray_cluster(nodes=2, cpus=1) as info:
        yield info


@pytest.fixture
def on_cluster(ray_cluster, monkeypatch):
    monkeypatch.setenv(settings.RAY_ADDRESS_ENV, ray_cluster["address"])
    return ray_cluster


def config(dataset, **kw) -> dict:
    return StrategyConfig(**{**TINY, "dataset": str(dataset), **kw}).to_dict()


def _files(run: Run) -> set[str]:
    """The run's files, TensorBoard's event files (named by host, pid and time) by their folder."""
    names = set()
    for path in run.dir.rglob("*"):
        if path.is_file():
            rel = path.relative_to(run.dir)
            names.add(str(rel.parent / "events") if "tfevents" in rel.name else str(rel))
    return names


def test_run_on_the_cluster_ends_done_with_the_files_of_a_local_run(store, image_folder, on_cluster, monkeypatch):
    monkeypatch.delenv(settings.RAY_ADDRESS_ENV)
    local = store.create(config(image_folder, epochs=2, batch_size=8), name="local")
    jobs.submit(local)
    assert wait_state(local, "done", "failed", "cancelled", timeout=150.0)["state"] == "done", worker_log(local)[-3000:]

    monkeypatch.setenv(settings.RAY_ADDRESS_ENV, on_cluster["address"])
    remote = store.create(config(image_folder, epochs=2, batch_size=8), name="on the cluster")
    jobs.submit(remote)
    dispatched = remote.status()
    assert dispatched["state"] == "running" and dispatched["cluster"]["actor"] == cluster.actor_name(remote)
    assert dispatched["cluster"]["num_cpus"] == 1 and dispatched["cluster"]["num_gpus"] == 0
    status = wait_state(remote, "done", "failed", "cancelled", timeout=150.0)
    assert status["state"] == "done", f"{status}\n{worker_log(remote)[-3000:]}"
    assert status["reason"] is None and status["error"] is None

    by_the_clock = {"checkpoint.keras"}  # written at most every 20 s while training (BestWeights): timing's
    assert _files(remote) - by_the_clock == _files(local) - by_the_clock
    assert {"model.keras", "metrics.json", "predictions.csv", "history.csv", "worker.log"} <= _files(remote)
    assert any(name.startswith("tb/") and name.endswith("/events") for name in _files(remote))
    assert remote.history()["epoch"].tolist() == local.history()["epoch"].tolist() == [1, 2]
    assert set(remote.metrics()) == set(local.metrics())
    assert len(remote.predictions()) == len(local.predictions()) == 8
    assert f"run {remote.id} ended done" in worker_log(remote)

    # where it ran: a node of this cluster, the worker's own host and pid, shown by the dashboard
    info = status["cluster"]
    assert info["node_id"] in on_cluster["node_ids"] and info["node_ip"]
    assert status["host"] == socket.gethostname() and status["pid"] and status["pid"] != os.getpid()
    assert cluster.where(status).startswith(f"Ray node {info['node_ip']} ({status['host']}, node ")
    assert cluster.where(local.status()) == socket.gethostname()
    # the actor gave its CPU back once its worker ended
    wait_for(lambda: cluster.lost_reason({**status, "state": "running"}), 30, "the run's actor to exit")


def test_cancel_and_force_stop_on_the_cluster(store, on_cluster):
    run = store.create({"target": "epochs", "epochs": 500, "sleep": 0.1}, name="cancel me")
    jobs.submit(run)
    wait_for(lambda: len(run.history()) >= 2, 90, f"epochs on the cluster; log:\n{worker_log(run)}")
    assert run.progress()["epochs"] == 500  # live progress through the shared run store
    assert jobs.cancel(run) in ("running", "cancelled")
    status = wait_state(run, "cancelled", "failed", "done", timeout=60)
    assert status["state"] == "cancelled", f"{status}\n{worker_log(run)}"
    assert "cancel" in status["reason"] and 2 <= len(run.history()) < 500
    wait_for(lambda: not pid_alive(status["pid"], status["pid_start"]), 30, "the cancelled worker to exit")

    stuck = store.create({"target": "forever"}, name="ignores cancel")
    jobs.submit(stuck)
    wait_for(lambda: (stuck.dir / "starts.log").exists(), 90, f"the stuck run to start; log:\n{worker_log(stuck)}")
    jobs.cancel(stuck)
    time.sleep(1.0)
    assert stuck.status()["state"] == "running"  # it ignores the flag, as a hung fit would
    pid, pid_start = stuck.status()["pid"], stuck.status()["pid_start"]
    assert jobs.kill(stuck, reason="stopped by user (forced)")
    status = stuck.status()
    assert status["state"] == "failed" and status["reason"] == "stopped by user (forced)"
    wait_for(lambda: not pid_alive(pid, pid_start), 30, "the stuck worker to be killed")
    wait_for(lambda: cluster.lost_reason({**status, "state": "running"}), 30, "its actor to be gone")


def test_a_run_waiting_for_cluster_resources_counts_and_cancels(store, on_cluster, monkeypatch):
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    big = store.create({"target": "epochs", "epochs": 1, "num_cpus": 2}, name="needs 2 cpus")
    after = store.create({"target": "epochs", "epochs": 1}, name="behind it")
    jobs.submit(big)
    jobs.submit(after)
    time.sleep(3.0)  # no node has 2 CPUs: the actor waits for one, and holds the queue's only slot
    jobs.pump(store)
    assert big.status()["state"] == "running" and not big.status()["pid"]
    assert cluster.where(big.status()) == "Ray cluster (waiting for a node)"
    assert after.status()["state"] == "queued"
    assert jobs.cancel(big) == "cancelled"
    assert big.status()["reason"] == "cancelled before it started"
    assert not (big.dir / "starts.log").exists()
    jobs.pump(store)
    assert wait_state(after, "done", "failed", timeout=90)["state"] == "done", worker_log(after)


def test_killed_worker_fails_with_its_reason_and_the_queue_moves_on(store, on_cluster):
    first = store.create({"target": "epochs", "epochs": 500, "sleep": 0.1}, name="to be killed")
    second = store.create({"target": "epochs", "epochs": 2}, name="next in line")
    jobs.submit(first)
    jobs.submit(second)
    assert second.status()["state"] == "queued"  # the limit is 1 and the first one runs
    wait_for(lambda: len(first.history()) >= 1, 90, f"the first run to train; log:\n{worker_log(first)}")
    pid = first.status()["pid"]
    os.killpg(pid, signal.SIGKILL)
    status = wait_state(first, "failed", "done", "cancelled", timeout=60)
    assert status["state"] == "failed"
    assert "SIGKILL" in status["reason"] and str(pid) in status["reason"], status["reason"]
    assert status["finished"] and 1 <= len(first.history()) < 500
    jobs.pump(store)  # as the dashboard's refresh does: the queue moves on, on the cluster
    second_status = wait_state(second, "done", "failed", timeout=90)
    assert second_status["state"] == "done", worker_log(second)
    assert second_status["pid"] != pid and second_status["cluster"]["node_id"] in on_cluster["node_ids"]


# ---------------------------------------------------------------- sharded extraction

@pytest.fixture
def big_folder(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    make_local_backbone(weights)
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(weights))
    root = tmp_path / "big"
    for i, cls in enumerate(["a", "b"]):
        write_images(root / "train" / cls, i, 96, seed=1)
        write_images(root / "validation" / cls, i, 4, seed=2)
    monkeypatch.setenv("TRANSFER_LAB_SHARD_MIN_IMAGES", "100")
    monkeypatch.setenv("TRANSFER_LAB_SHARD_IMAGES", "64")  # 192 photos: shards of 64, 64, 64
    return root


def _kill_a_shard(groups: set[int], stop: threading.Event, killed: list[int]) -> None:
    """Kill the first Ray worker seen running ``extract_shard`` (it is still importing TensorFlow)."""
    while not stop.is_set() and not killed:
        for pid in processes_of(groups):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::extract_shard"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            except OSError:
                continue
        time.sleep(0.05)


def _extract_killing_one_shard(ds, groups: set[int]):
    from core.features import cache

    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_shard, args=(groups, stop, killed), daemon=True)
    killer.start()
    seen = []
    try:
        return cache.extract_features(ds, "tiny", split="train", batch_size=32,
                                      progress=lambda p: seen.append(p.done)), killed, seen
    finally:
        stop.set()
        killer.join(10)


def test_sharded_extraction_equals_local_and_survives_a_killed_shard(big_folder, on_cluster, monkeypatch):
    from core.data.dataset import scan_folder
    from core.features import cache, sharded

    ds = scan_folder(big_folder)
    assert sharded.plan(192, 32) == [(0, 64), (64, 128), (128, 192)]
    assert sharded.plan(99, 32) is None  # below the threshold: local

    fs, killed, seen = _extract_killing_one_shard(ds, on_cluster["groups"])
    assert killed, "no shard worker was seen running"
    assert not fs.from_cache and fs.X.shape == (192, 12) and fs.valid.all()
    assert seen[-1] == 192 and seen == sorted(seen)
    sharded_bytes = np.asarray(fs.X).tobytes()
    checked = cache.read_entry(fs.key, ds.classes)  # sizes and checksums verified on read
    assert checked.meta["checksums"] == fs.meta["checksums"]
    key, checksums, paths = fs.key, fs.meta["checksums"], fs.paths

    cache.clear_cache()
    monkeypatch.delenv(settings.RAY_ADDRESS_ENV)
    local = cache.extract_features(ds, "tiny", split="train", batch_size=32)
    assert not local.from_cache and local.key == key and local.paths == paths
    assert np.asarray(local.X).tobytes() == sharded_bytes  # same engine, same batches: the same bytes
    assert local.meta["checksums"] == checksums


def test_a_shard_failing_every_try_writes_no_entry(big_folder, on_cluster, monkeypatch):
    from core.data.dataset import scan_folder
    from core.features import sharded

    monkeypatch.setenv(settings.SHARD_RETRIES_ENV, "0")
    ds = scan_folder(big_folder)
    with pytest.raises(sharded.ShardFailed, match="failed on the Ray cluster after 1 try.*no cache entry"):
        _extract_killing_one_shard(ds, on_cluster["groups"])
    features = Path(os.environ["TRANSFER_LAB_HOME"]) / "features"
    assert not list(features.iterdir())  # neither an entry nor a half-written folder


def test_a_killed_run_actor_takes_its_worker_and_the_run_fails(store, on_cluster):
    run = store.create({"target": "epochs", "epochs": 500, "sleep": 0.1}, name="node lost")
    jobs.submit(run)
    wait_for(lambda: len(run.history()) >= 1, 90, f"the run to train; log:\n{worker_log(run)}")
    status = run.status()
    os.kill(status["cluster"]["actor_pid"], signal.SIGKILL)  # the Ray worker process holding the run
    wait_for(lambda: not pid_alive(status["pid"], status["pid_start"]), 30, "the worker to die with its actor")
    wait_for(lambda: cluster.lost_reason(status), 30, "Ray to report the actor gone")
    jobs.pump(store)
    after = run.status()
    assert after["state"] == "failed" and str(status["pid"]) in after["reason"], after
    assert len(run.history()) < 500


def test_a_cancelled_sharded_extraction_writes_no_entry(big_folder, on_cluster, monkeypatch):
    from core.data.dataset import scan_folder
    from core.features import cache

    monkeypatch.setenv("TRANSFER_LAB_SHARD_IMAGES", "32")  # six shards: some are still out when it stops
    ds = scan_folder(big_folder)
    seen: list[int] = []
    with pytest.raises(cache.Cancelled):
        cache.extract_features(ds, "tiny", split="train", batch_size=32, progress=lambda p: seen.append(p.done),
                               should_stop=lambda: bool(seen))
    assert seen and seen[-1] < 192  # it stopped after the first shard came back, not at the end
    features = Path(os.environ["TRANSFER_LAB_HOME"]) / "features"
    assert not list(features.iterdir())
    with monkeypatch.context() as m:  # and inside a run on a node, a run's extraction stays on its node
        m.setenv(settings.RAY_ACTOR_ENV, "tl-run-x")
        from core.features import sharded

        assert sharded.plan(192, 32) is None
