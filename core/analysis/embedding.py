"""2-D feature maps of a dataset, and how well each backbone's features separate its classes.

Maps project the cached pooled features (L2-normalised, so distances are
cosine-like) to 2-D with PCA, or with t-SNE after PCA to 50 dimensions; the
coordinates are cached on disk by feature-cache key, so a map is computed once.

Separability is measured, not assumed: 5-NN leave-one-out accuracy and the
silhouette score (both cosine) of the pooled features, beside the speed the
extraction ran at on this machine.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from core import atomic, settings
from core.data.dataset import Dataset, subset
from core.errors import CacheCorrupt, TransferLabError
from core.analysis.labeling import KNN_K, StageProgress, dataset_features, l2_normalise

METHODS = ("pca", "tsne")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
EMBED_VERSION = 1
TSNE_PCA_DIMS = 50
TSNE_ITERATIONS = 500  # KL barely moves after this on pooled features; half the time of the default 1000
SILHOUETTE_MAX = 4000  # silhouette on a seeded sample above this many photos (it is quadratic)


class EmbeddingError(TransferLabError):
    """A feature map or separability figure that cannot be computed for this data."""


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
    return settings.subdir("embeddings") / f"{method}-{digest}"


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _read_cached(folder: Path, n: int) -> tuple[np.ndarray, dict]:
    meta = atomic.read_json(folder / "meta.json")
    coords_path = folder / "coords.npy"
    if not meta or not coords_path.is_file():
        raise CacheCorrupt(f"no cached map in {folder}")
    if _digest(coords_path) != meta.get("checksum"):
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
    meta = {**meta, "checksum": _digest(folder / "coords.npy")}
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


# ---------------------------------------------------------------- separability

def knn_loo_accuracy(X: np.ndarray, y: np.ndarray, k: int = KNN_K, chunk: int = 1024) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine similarity, the photo itself excluded).

    Ties are broken by the summed similarity of the tied classes' neighbours.
    """
    y = np.asarray(y, np.int64)
    n = len(y)
    if n < 2:
        raise EmbeddingError("k-NN accuracy needs at least two photos.")
    Xn = l2_normalise(X).astype(np.float32)
    k = max(1, min(k, n - 1))
    n_classes = int(y.max()) + 1
    correct = 0
    for s in range(0, n, chunk):
        sim = Xn[s:s + chunk] @ Xn.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        nn_sim = np.take_along_axis(sim, nn, axis=1)
        votes = np.zeros((len(rows), n_classes))
        weight = np.zeros((len(rows), n_classes))
        np.add.at(votes, (rows[:, None], y[nn]), 1.0)
        np.add.at(weight, (rows[:, None], y[nn]), nn_sim)
        score = votes + 1e-6 * (weight - weight.min()) / (np.ptp(weight) + 1e-12)
        correct += int((score.argmax(axis=1) == y[s:s + chunk]).sum())
    return correct / n


def silhouette(X: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Silhouette score with cosine distance (-1..1; higher: tighter, better separated classes)."""
    from sklearn.metrics import silhouette_score

    y = np.asarray(y)
    labels = np.unique(y)
    if len(labels) < 2 or len(labels) >= len(y):
        return float("nan")
    Xn = l2_normalise(X)
    if not np.isfinite(Xn).all() or np.allclose(Xn, Xn[0]):
        return 0.0  # every photo looks the same to this backbone
    sample = SILHOUETTE_MAX if len(y) > SILHOUETTE_MAX else None
    return float(silhouette_score(Xn, y, metric="cosine", sample_size=sample, random_state=seed))


def separability(X: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    y = np.asarray(y, np.int64)
    counts = np.bincount(y)
    return {
        "knn_accuracy": knn_loo_accuracy(X, y),
        "silhouette": silhouette(X, y, seed),
        "chance": float(counts.max() / counts.sum()) if counts.sum() else float("nan"),
        "images": int(len(y)),
    }


def default_entries() -> list[tuple[str, Any]]:
    """Every backbone whose ImageNet weights are on this machine, then the first one with
    random weights (the baseline that shows what the pretraining is worth)."""
    from core.nets.backbones import list_backbones, weights_location

    local = [s.name for s in list_backbones() if weights_location(s) is not None]
    entries: list[tuple[str, Any]] = [(name, "imagenet") for name in local]
    if local:
        entries.append((local[0], None))
    return entries


def _benchmark(name: str) -> float | None:
    """Images/s from the backbone speed benchmark (``core.analysis.speed``) when it was measured here."""
    from core.analysis import speed

    try:
        result = speed.read(name)
    except TransferLabError:
        return None
    return float(result.images_per_s) if result else None


def weights_label(weights: Any) -> str:
    if weights is None:
        return "random"
    return "ImageNet" if weights == "imagenet" else Path(str(weights)).name


def separability_table(
    ds: Dataset,
    entries: Sequence[tuple[str, Any]] | None = None,
    *,
    per_class: int | None = None,
    split: str = "train",
    seed: int = 0,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """One row per (backbone, weights): how well its pooled features separate ``ds``'s classes.

    ``per_class``: measure on a seeded sample of at most that many photos a class of
    ``split`` (extraction through big backbones is slow on a CPU); None: the whole split.
    A backbone that cannot run (weights missing offline) gets its reason in ``error``.
    """
    from core.nets.backbones import get_spec
    from core.features.cache import Cancelled

    entries = list(entries) if entries is not None else default_entries()
    if not entries:
        raise EmbeddingError("No backbone to measure: none has its weights on this machine.")
    sample = subset(ds, per_class, seed, splits=(split,)) if per_class else ds
    if not sample.split(split):
        raise EmbeddingError(f"The {split} split of '{ds.name}' has no photos.")
    rows = []
    for name, weights in entries:
        spec = get_spec(name)
        row: dict[str, Any] = {"backbone": spec.display_name, "name": name, "weights": weights_label(weights)}
        stage = f"{spec.display_name} ({weights_label(weights)})"
        try:
            feats = dataset_features(sample, name, weights,
                                     (lambda s, p, stage=stage: progress(stage, p)) if progress else None,
                                     should_stop, splits=(split,))
            row.update(separability(feats.X, feats.y, seed))
            bench = _benchmark(name)
            row.update({"dims": int(feats.X.shape[1]), "error": "",
                        "images_per_s": bench if bench else feats.images_per_s,
                        "speed_from": "speed benchmark" if bench else
                        f"an earlier extraction ({feats.images} photos) these features were cached from"
                        if feats.speed_inherited else
                        f"this extraction ({feats.images} photos, warm-up included)" if feats.images else
                        "not measured: the features came from an older feature cache (see the Backbones page)"})
        except Cancelled:
            raise
        except TransferLabError as exc:
            row["error"] = str(exc)
        rows.append(row)
    columns = ["backbone", "weights", "knn_accuracy", "silhouette", "images_per_s", "images", "dims",
               "speed_from", "chance", "name", "error"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame = frame.sort_values(["knn_accuracy", "silhouette"], ascending=False, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def sample_note(ds: Dataset, per_class: int | None, split: str = "train") -> str:
    counts = ds.counts()[split]
    if per_class is None or all(n <= per_class for n in counts.values()):
        return f"all {sum(counts.values()):,} {split} photos"
    return f"a seeded sample of up to {per_class} {split} photos a class ({sum(min(n, per_class) for n in counts.values()):,} photos)"
