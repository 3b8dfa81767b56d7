"""2-D feature maps (PCA, t-SNE) with their disk cache."""

from __future__ import annotations


import numpy as np
import pytest

from core.analysis import embedding
from core.data.dataset import scan_folder
from tests.test_label_issues import blobs



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
