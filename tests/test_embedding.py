"""2-D feature maps (PCA, t-SNE) with their disk cache, and separability figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.analysis import embedding
from core.data.dataset import scan_folder
from core.errors import TransferLabError, WeightsUnavailable
from tests import tiny_backbone
from tests.test_labeling import blobs


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return tiny_backbone.build(tmp_path_factory.mktemp("tiny_weights_emb"))


@pytest.fixture
def tiny(tiny_weights, monkeypatch) -> str:
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tiny_weights))
    return tiny_backbone.NAME


def test_pca_and_tsne_shapes_and_cache(tl_home):
    X, y = blobs(n_per_class=30, k=3, dim=60)
    for method in ("pca", "tsne"):
        coords, info = embedding.project(X, method, key="k1")
        assert coords.shape == (90, 2) and np.isfinite(coords).all() and not info["from_cache"]
        again, info2 = embedding.project(X, method, key="k1")
        assert info2["from_cache"] and np.allclose(again, coords, atol=1e-5)
        assert info2["seconds"] == pytest.approx(info["seconds"])
    assert info["pca_dims"] == 50 and info["perplexity"] == pytest.approx(29.667, abs=1e-3)
    folders = list((tl_home / "embeddings").iterdir())
    assert len(folders) == 2 and all((f / "meta.json").is_file() for f in folders)


def test_pca_separates_blobs_along_its_axes():
    X, y = blobs(n_per_class=40, k=2, dim=20, spread=0.1)
    coords, info = embedding.project(X, "pca")
    first = coords[:, 0]
    assert (first[y == 0].max() < first[y == 1].min()) or (first[y == 1].max() < first[y == 0].min())
    assert sum(info["explained_variance"]) > 0.3


def test_corrupt_cache_is_recomputed(tl_home):
    X, _ = blobs(n_per_class=10, k=2, dim=8)
    coords, _ = embedding.project(X, "pca", key="k2")
    folder = next((tl_home / "embeddings").iterdir())
    (folder / "coords.npy").write_bytes(b"garbage")
    again, info = embedding.project(X, "pca", key="k2")
    assert not info["from_cache"] and np.allclose(again, coords)
    _, info = embedding.project(X[:5], "pca", key="k2")  # another shape under the same key: not trusted
    assert not info["from_cache"]


def test_small_inputs():
    assert embedding.project(np.ones((1, 4)), "pca")[0].shape == (1, 2)
    with pytest.raises(embedding.EmbeddingError, match="at least 5"):
        embedding.project(np.random.default_rng(0).normal(size=(4, 3)), "tsne")
    with pytest.raises(embedding.EmbeddingError, match="No photos"):
        embedding.project(np.zeros((0, 3)), "pca")
    with pytest.raises(embedding.EmbeddingError, match="Unknown"):
        embedding.project(np.ones((3, 3)), "umap")


def test_knn_loo_accuracy_and_silhouette():
    X, y = blobs(n_per_class=40, k=3, dim=16, spread=0.2)
    assert embedding.knn_loo_accuracy(X, y) == 1.0
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(y)
    acc = embedding.knn_loo_accuracy(X, shuffled)
    assert acc < 0.6  # labels unrelated to the features: near chance (1/3)
    assert embedding.silhouette(X, y) > 0.5 > embedding.silhouette(X, shuffled)
    assert embedding.silhouette(np.zeros((10, 4)), np.repeat([0, 1], 5)) == 0.0
    # leave-one-out really leaves the photo out: duplicates of one point with another label
    X2 = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    assert embedding.knn_loo_accuracy(X2, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert embedding.knn_loo_accuracy(X2, np.array([0, 1, 0, 1]), k=1) == 0.0
    # a chunk smaller than the data gives the same answer
    assert embedding.knn_loo_accuracy(X, shuffled, chunk=7) == acc


def test_feature_map_of_a_dataset_is_cached(tiny, image_folder):
    ds = scan_folder(image_folder)
    fmap = embedding.feature_map(ds, tiny, method="pca")
    f = fmap.frame
    assert len(f) == 32 and set(f["split"]) == {"train", "validation"} and set(f["label"]) == {"a", "b"}
    assert list(f.columns) == ["x", "y", "path", "file", "label", "split"]
    assert f["file"].str.endswith(".png").all() and not fmap.from_cache
    again = embedding.feature_map(ds, tiny, method="pca")
    assert again.from_cache and np.allclose(again.frame[["x", "y"]], f[["x", "y"]], atol=1e-5)
    tsne = embedding.feature_map(ds, tiny, method="tsne")
    assert not tsne.from_cache and len(tsne.frame) == 32
    # red vs green photos through colour-mean features: the map keeps the classes apart
    a, b = f[f["label"] == "a"]["x"], f[f["label"] == "b"]["x"]
    assert a.max() < b.min() or b.max() < a.min()


def test_separability_table_real_vs_random(tiny, flat_folder):
    ds = scan_folder(flat_folder)
    entries = embedding.default_entries()
    assert entries == [(tiny, "imagenet"), (tiny, None)]
    table = embedding.separability_table(ds, entries, per_class=6, split="train")
    assert sorted(table["weights"]) == ["ImageNet", "random"]
    assert (table["images"] == 18).all() and (table["error"] == "").all()
    assert (table["images_per_s"] > 0).all() and (table["dims"] == 3).all()
    real = table[table["weights"] == "ImageNet"].iloc[0]
    assert real["knn_accuracy"] == 1.0 and real["silhouette"] > 0.5
    assert real["chance"] == pytest.approx(1 / 3)
    assert table["knn_accuracy"].is_monotonic_decreasing
    assert (table["speed_from"] == "this extraction (18 photos, warm-up included)").all()
    fewer = embedding.separability_table(ds, entries, per_class=4, split="train")  # rows from the cache
    assert np.allclose(fewer["images_per_s"], table["images_per_s"])
    assert fewer["speed_from"].str.startswith("an earlier extraction (18 photos)").all()

    from core.analysis import speed

    measured = speed.measure(tiny, batch_size=4, batches=1)
    again = embedding.separability_table(ds, entries, per_class=6, split="train")
    assert np.allclose(again["images_per_s"], measured.images_per_s)
    assert (again["speed_from"] == "speed benchmark").all()


def test_separability_table_reports_a_backbone_that_cannot_run(tiny, flat_folder, monkeypatch):
    ds = scan_folder(flat_folder)
    real = embedding.dataset_features

    def fake(ds_, name, weights, *a, **k):
        if weights is None:
            raise WeightsUnavailable("weights missing here")
        return real(ds_, name, weights, *a, **k)

    monkeypatch.setattr(embedding, "dataset_features", fake)
    table = embedding.separability_table(ds, [(tiny, "imagenet"), (tiny, None)], per_class=4)
    assert list(table["error"]) == ["", "weights missing here"]
    assert np.isnan(table["knn_accuracy"].iloc[1])


def test_separability_table_needs_photos(tiny, flat_folder):
    ds = scan_folder(flat_folder)
    with pytest.raises(TransferLabError):
        embedding.separability_table(ds, [(tiny, "imagenet")], split="nope")
    assert "seeded sample of up to 4" in embedding.sample_note(ds, 4)
    assert embedding.sample_note(ds, None).startswith("all ")
