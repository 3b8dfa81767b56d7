"""2-D feature maps of a dataset.

Maps project the cached pooled features (L2-normalised, so distances are
cosine-like) to 2-D with PCA, or with t-SNE after PCA to 50 dimensions; the
coordinates are cached on disk by feature-cache key, so a map is computed once.
How well the features separate the classes is ``core.analysis.separability``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from core import atomic, layout
from core.data.dataset import Dataset
from core.hashing import file_sha256
from core.errors import CacheCorrupt, TransferLabError
from core.features.neighbours import l2_normalise
from core.features.dataset import StageProgress, dataset_features

METHODS = ("pca", "tsne")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
EMBED_VERSION = 1
TSNE_PCA_DIMS = 50
TSNE_ITERATIONS = 500  # KL barely moves after this on pooled features; half the time of the default 1000


class EmbeddingError(TransferLabError):
    """A feature map that cannot be computed for this data."""


# ---------------------------------------------------------------- projections

def _openmp_threads() -> int | None:
    """One OpenMP thread when the CPU is already oversubscribed (OpenMP's busy-waiting threads then
    slow t-SNE down tenfold or more); None (the library default) otherwise."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return 1 if load >= (os.cpu_count() or 1) else None


def _compute(X: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, dict]:
    from sklearn.decomposition import PCA

    Xn = l2_normalise(X)
    n, d = Xn.shape
    info: dict[str, Any] = {"n": n, "dims": d}
    if method == "pca":
        k = min(2, n, d)
        coords = np.zeros((n, 2))
        if k >= 1 and n >= 2:
            pca = PCA(n_components=k, random_state=seed)
            coords[:, :k] = pca.fit_transform(Xn)
            info["explained_variance"] = [float(v) for v in pca.explained_variance_ratio_]
        return coords, info
    if method == "tsne":
        from sklearn.manifold import TSNE

        if n < 5:
            raise EmbeddingError(f"t-SNE needs at least 5 photos; this dataset has {n}. Use PCA.")
        t0 = time.perf_counter()
        k = min(TSNE_PCA_DIMS, n, d)
        reduced = PCA(n_components=k, random_state=seed).fit_transform(Xn) if d > k else Xn
        info["pca_seconds"] = time.perf_counter() - t0
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed,
                    max_iter=TSNE_ITERATIONS)
        threads = _openmp_threads()
        if threads is None:
            coords = tsne.fit_transform(reduced)
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(threads, user_api="openmp"):
                coords = tsne.fit_transform(reduced)
        info.update(perplexity=perplexity, pca_dims=k, kl_divergence=float(tsne.kl_divergence_),
                    iterations=TSNE_ITERATIONS, openmp_threads=threads)
        return coords, info
    raise EmbeddingError(f"Unknown projection '{method}'; use one of {', '.join(METHODS)}.")


def _cache_dir(key: str, method: str, seed: int) -> Path:
    digest = hashlib.sha256(f"{key}|{method}|{seed}|v{EMBED_VERSION}".encode()).hexdigest()[:16]
    return layout.cache("embeddings") / f"{method}-{digest}"


def _read_cached(folder: Path, n: int) -> tuple[np.ndarray, dict]:
    meta = atomic.read_json(folder / "meta.json")
    coords_path = folder / "coords.npy"
    if not meta or not coords_path.is_file():
        raise CacheCorrupt(f"no cached map in {folder}")
    if file_sha256(coords_path) != meta.get("checksum"):
        raise CacheCorrupt(f"cached map {coords_path} failed its checksum")
    coords = np.load(coords_path, allow_pickle=False)
    if coords.shape != (n, 2):
        raise CacheCorrupt(f"cached map {coords_path} has shape {coords.shape}, expected {(n, 2)}")
    return coords, meta


def _write_cached(folder: Path, coords: np.ndarray, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(folder / "coords.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(coords, np.float32), allow_pickle=False)
    meta = {**meta, "checksum": file_sha256(folder / "coords.npy")}
    atomic.write_json(folder / "meta.json", meta)


def project(X: np.ndarray, method: str = "pca", seed: int = 0, key: str | None = None) -> tuple[np.ndarray, dict]:
    """2-D coordinates of the rows of ``X``; cached on disk under ``key`` when one is given.

    Returns ``(coords, info)``; ``info`` has ``seconds`` (the computation's time, measured
    when it ran) and ``from_cache``.
    """
    n = len(X)
    if n == 0:
        raise EmbeddingError("No photos to draw.")
    folder = _cache_dir(key, method, seed) if key else None
    if folder is not None:
        try:
            coords, meta = _read_cached(folder, n)
            return coords.astype(np.float64), {**meta, "from_cache": True}
        except CacheCorrupt:
            pass
    start = time.perf_counter()
    coords, info = _compute(np.asarray(X), method, seed)
    info.update(method=method, seed=seed, seconds=time.perf_counter() - start, key=key)
    if folder is not None:
        try:
            _write_cached(folder, coords, info)
        except OSError:
            pass  # an unwritable cache only costs a recomputation
    return coords, {**info, "from_cache": False}


@dataclass
class FeatureMap:
    """A dataset's photos placed in 2-D: one row per photo (x, y, path, file, label, split)."""

    frame: pd.DataFrame
    method: str
    backbone: str
    info: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(self.info.get("seconds", 0.0))

    @property
    def from_cache(self) -> bool:
        return bool(self.info.get("from_cache"))


def feature_map(ds: Dataset, backbone: str, *, weights: Any = "imagenet", method: str = "pca", seed: int = 0,
                progress: StageProgress | None = None, should_stop: Callable[[], bool] | None = None) -> FeatureMap:
    """The dataset's pooled features (from the feature cache) projected to 2-D."""
    feats = dataset_features(ds, backbone, weights, progress, should_stop)
    key = "+".join(feats.keys)
    coords, info = project(feats.X, method, seed, key=key)
    frame = pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1], "path": feats.paths,
        "file": [Path(p).name for p in feats.paths],
        "label": [ds.classes[i] for i in feats.y], "split": feats.splits,
    })
    return FeatureMap(frame, method, backbone, info)
