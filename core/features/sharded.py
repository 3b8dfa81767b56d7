"""Feature extraction sharded across a Ray cluster (``TRANSFER_LAB_RAY_ADDRESS``).

``core.features.cache`` asks ``plan`` before it runs the network: below
``TRANSFER_LAB_SHARD_MIN_IMAGES`` images to extract (default 20,000), or without a
cluster, extraction stays local. Above it, the photos still to extract are cut into
shards of whole batches (``TRANSFER_LAB_SHARD_IMAGES``, default 2,048, rounded down to a
multiple of the batch size, so every batch holds the same photos as a local extraction's
and the rows come out byte-identical on the same engine). Each shard is one Ray task:
its node loads the backbone (checking that its weights are the ones the cache key names),
runs it on the engine that node chooses, and returns its rows. The cache writes each
shard's rows into the entry being built as they arrive, so the entry is assembled,
checksummed and renamed into place exactly as a local one, atomically.

A shard whose worker dies (a lost node, a killed process) or hits an ``OSError`` is
retried (``TRANSFER_LAB_SHARD_RETRIES`` times, default 2, on any node); if it still fails, the other shards
are cancelled and no entry is written (``ShardFailed``). The photos must be on a path
every node sees, like the run store.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import numpy as np

from core import settings
from core.errors import Cancelled, ClusterError
from core import ray_client
from core.data.pipeline import pixel_batches
from core.nets import backbones

DEFAULT_MIN_IMAGES = 20_000
DEFAULT_SHARD_IMAGES = 2_048
SHARD_RETRIES = 2

_remote_shard = None
_loaded: dict = {}  # on a node: the last backbone loaded, reused by the next shard of the same network


class ShardFailed(ClusterError):
    """A shard of a sharded extraction failed on every try; no cache entry was written."""


def min_images() -> int:
    return settings.count(settings.SHARD_MIN_IMAGES_ENV, DEFAULT_MIN_IMAGES, error=ClusterError)


def shard_images() -> int:
    return settings.count(settings.SHARD_IMAGES_ENV, DEFAULT_SHARD_IMAGES, error=ClusterError)


def retries() -> int:
    return settings.count(settings.SHARD_RETRIES_ENV, SHARD_RETRIES, least=0, error=ClusterError)


def plan(n: int, batch_size: int) -> list[tuple[int, int]] | None:
    """``[(start, stop), ...]`` shards of ``n`` photos to extract, or None to extract locally
    (no cluster configured, fewer than ``min_images()`` photos, a single shard, or inside a run
    that already runs on a node: its shards would wait for the CPUs that runs like it hold)."""
    if not ray_client.enabled() or n < min_images() or settings.ray_actor():
        return None
    size = max(batch_size, shard_images() // batch_size * batch_size)  # whole batches only
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    return bounds if len(bounds) > 1 else None


def extract_shard(paths: list[str], backbone: str, weights: Any, seed: int, size: int, pooling: str,
                  weights_id: str, batch_size: int) -> dict:
    """On a node: the rows of ``paths`` (features, valid mask) and the engine that made them."""

    key = (backbone, str(weights), seed, size)
    bb = _loaded.get(key)
    if bb is None or bb.weights_id != weights_id:
        _loaded.clear()
        bb = _loaded[key] = backbones.load_backbone(backbone, weights, size, seed)
    if bb.weights_id != weights_id:
        raise ClusterError(f"Node {socket.gethostname()} has other weights for {backbone} ({bb.weights_id}, "
                           f"expected {weights_id}): every node needs the same weights folder.")
    forward = bb.frozen_forward(pooling)
    start = time.perf_counter()
    feats, valid = [], []
    for pixels, ok in pixel_batches(paths, size, batch_size):
        feats.append(np.asarray(forward(pixels), np.float32))
        valid.append(np.asarray(ok, bool))
    return {"features": np.concatenate(feats), "valid": np.concatenate(valid), "engine": forward.label,
            "host": socket.gethostname(), "seconds": time.perf_counter() - start}


def extract(bounds: list[tuple[int, int]], paths: list[str], rows: list[int], out: np.ndarray, valid: np.ndarray,
            net: Any, weights: Any, seed: int, batch_size: int, *,
            on_rows: Callable[[int], None] | None = None, should_stop: Callable[[], bool] | None = None) -> str:
    """Run the shards of ``paths`` (entry rows ``rows``) on the cluster and write their features into
    ``out``/``valid``; returns the engine label every shard used. ``on_rows(n)`` after each shard."""

    global _remote_shard
    ray = ray_client.connect()
    tries = retries() + 1
    _remote_shard = _remote_shard or ray.remote(extract_shard)
    task = _remote_shard.options(num_cpus=1, max_retries=tries - 1, retry_exceptions=[OSError],
                                 runtime_env={"env_vars": ray_client.node_env()})
    pending = {task.remote(paths[a:b], net.backbone, weights, seed, net.input_size, net.pooling, net.weights_id,
                           batch_size): (a, b) for a, b in bounds}
    engines: set[str] = set()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            if should_stop and should_stop():
                raise Cancelled("Feature extraction was cancelled.")
            for ref in ready:
                a, b = pending.pop(ref)
                try:
                    shard = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, NodeDiedError...
                    cause = getattr(err, "cause", None) or err
                    text = str(cause).strip().splitlines()
                    raise ShardFailed(
                        f"Shard of photos {a + 1:,}-{b:,} failed on the Ray cluster after {tries} "
                        f"tr{'ies' if tries > 1 else 'y'} ({type(cause).__name__}: {text[0] if text else ''}); "
                        "no cache entry was written.") from err
                if len(shard["features"]) != b - a:
                    raise ShardFailed(f"Shard of photos {a + 1:,}-{b:,} returned {len(shard['features'])} rows.")
                out[rows[a:b]] = shard["features"]
                valid[rows[a:b]] = shard["valid"]
                engines.add(shard["engine"])
                if on_rows:
                    on_rows(b - a)
    except BaseException:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished or gone meanwhile
                pass
        raise
    if len(engines) != 1:
        raise ShardFailed(f"The cluster's nodes extracted on different engines ({', '.join(sorted(engines))}); "
                          "set TRANSFER_LAB_ENGINE so every node uses the same one.")
    return engines.pop()
