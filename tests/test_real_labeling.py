"""Real tier: the acceptance figures of the labelling and exploring issue, measured with
the shared EfficientNet-Lite0/1/2 weights on ../shared/datasets/cats_vs_dogs.

Features of the full dataset come from ``extract_features(ds, "efficientnet_lite0", split=...,
pooling="avg")``, the same cache entries the other real tests use (computed once per session).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.data import builder as db
from core.analysis import embedding, imagenet_mapping, label_issues, labeling, separability
from core.data.dataset import scan_folder
from core.features.cache import extract_features

pytestmark = pytest.mark.real

LITE0 = "efficientnet_lite0"
SEPARABILITY_PER_CLASS = 50  # Lite1/Lite2 extract only ~10-20 images/s on a 2-core CPU: a seeded sample


def lite0(root: Path, split: str):
    ds = scan_folder(root)
    return ds, extract_features(ds, LITE0, split=split, pooling="avg")


def test_zero_shot_on_the_validation_photos(cats_vs_dogs):
    ds, val = lite0(cats_vs_dogs, "validation")
    X, y = val.usable()
    assert len(y) == 1000
    names = imagenet_mapping.imagenet_names(LITE0)
    mapping = imagenet_mapping.default_mapping(ds.classes, names)
    assert mapping == {"cats": list(range(281, 286)), "dogs": list(range(151, 269))}
    assert [names[i] for i in mapping["cats"]] == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    head = labeling.imagenet_head(LITE0)
    assert head is not None and head[0].shape == (1280, 1000)
    probs = labeling.probabilities_from_pooled(X, head)
    scores = labeling.zero_shot_scores(probs, mapping, ds.classes)
    acc = float((scores.argmax(axis=1) == y).mean())
    mapped = probs[:, mapping["cats"] + mapping["dogs"]]
    acc_argmax = float(((mapped.argmax(axis=1) >= 5).astype(int) == y).mean())
    print(f"\nzero-shot, 1,000 validation photos: summed mapped probabilities {acc:.3f}; "
          f"argmax over the mapped classes {acc_argmax:.3f}")
    assert acc >= 0.90


def test_few_shot_from_ten_labelled_photos_a_class(cats_vs_dogs):
    _, train = lite0(cats_vs_dogs, "train")
    _, val = lite0(cats_vs_dogs, "validation")
    Xt, yt = train.usable()
    Xv, yv = val.usable()
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(yt == j), 10, replace=False) for j in (0, 1)])
    logreg = labeling.few_shot_probabilities(Xt[pick], yt[pick], Xv, 2, "logreg")
    knn = labeling.few_shot_probabilities(Xt[pick], yt[pick], Xv, 2, "knn")
    acc = float((logreg.argmax(axis=1) == yv).mean())
    acc_knn = float((knn.argmax(axis=1) == yv).mean())
    print(f"\nfew-shot from 10 train photos a class (seed 0), 1,000 validation photos: "
          f"logistic regression {acc:.3f}, 5-NN {acc_knn:.3f}")
    assert acc >= 0.95
    assert acc_knn >= 0.85


def test_label_issues_find_flipped_labels(cats_vs_dogs):
    ds, train = lite0(cats_vs_dogs, "train")
    X, y = train.usable()
    paths = [p for p, ok in zip(train.paths, train.valid) if ok]
    noisy, flipped = label_issues.flip_labels(y, 10, seed=0)  # 10 cats called dogs, 10 dogs called cats
    start = time.perf_counter()
    issues = label_issues.label_issues(X, noisy, ds.classes, paths)
    seconds = time.perf_counter() - start
    top40 = set(issues["path"][:40])
    wrong = {paths[i] for i in flipped}
    found = len(top40 & wrong)
    flagged = set(issues.loc[issues["flagged"], "path"])
    print(f"\nlabel issues: {found} of the 20 flipped labels among the top 40 suspects; cleanlab flags "
          f"{len(flagged)} of {len(y)}, {len(flagged & wrong)} of them flipped ({seconds:.1f} s)")
    assert found >= 17
    # the hand-written confident-learning threshold it replaced flagged 12, all flipped
    assert len(flagged & wrong) >= 12 and len(flagged & wrong) >= 0.8 * len(flagged)


def test_auto_label_end_to_end_from_a_folder(cats_vs_dogs, tmp_path):
    """The product path: a built dataset with 5 photos a class, a folder of 20 unlabelled photos."""
    db.create_dataset("pets_real", ["cats", "dogs"])
    for cls in ("cats", "dogs"):
        files = sorted((cats_vs_dogs / "train" / cls).iterdir())[:5]
        db.add_photos("pets_real", cls, [(f.name, f) for f in files])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    truth = {}
    for cls in ("cats", "dogs"):
        for f in sorted((cats_vs_dogs / "validation" / cls).iterdir())[:10]:
            shutil.copy(f, inbox / f.name)
            truth[str(inbox / f.name)] = cls
    result = labeling.auto_label(labeling.scan_unlabelled(inbox), db.classes("pets_real"), LITE0, method="compare",
                                 labelled=db.scan("pets_real"))
    f = result.frame
    zs = float(np.mean([truth[p] == s for p, s in zip(f["path"], f["zero_shot"])]))
    fs = float(np.mean([truth[p] == s for p, s in zip(f["path"], f["few_shot"])]))
    print(f"\nauto-label 20 unlabelled photos: zero-shot {zs:.2f}, few-shot (5 a class) {fs:.2f}, "
          f"agree {f['agree'].mean():.2f}, {result.seconds:.1f} s")
    assert len(f) == 20 and zs >= 0.85 and fs >= 0.85
    report = db.add_labelled("pets_real", [(p, s) for p, s in zip(f["path"], f["suggestion"])])
    assert len(report.added) == 20 and len(db.scan("pets_real").records) == 30


def test_separability_ranks_pretrained_far_above_random(cats_vs_dogs):
    ds = scan_folder(cats_vs_dogs)
    entries = separability.default_entries()
    assert entries == [("efficientnet_lite0", "imagenet"), ("efficientnet_lite1", "imagenet"),
                       ("efficientnet_lite2", "imagenet"), ("efficientnet_lite0", None)]
    start = time.perf_counter()
    table = separability.separability_table(ds, entries, per_class=SEPARABILITY_PER_CLASS, split="train", seed=0)
    seconds = time.perf_counter() - start
    print(f"\nseparability on {separability.sample_note(ds, SEPARABILITY_PER_CLASS)} ({seconds:.0f} s):")
    print(table[["backbone", "weights", "knn_loo_accuracy", "probe_cv_accuracy", "silhouette", "images_per_s",
                 "images", "error"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    assert (table["error"] == "").all()
    assert set(table["name"]) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    real = table[(table["name"] == LITE0) & (table["weights"] == "ImageNet")].iloc[0]
    rand = table[table["weights"] == "random"].iloc[0]
    assert real["knn_loo_accuracy"] >= 0.9 and rand["knn_loo_accuracy"] <= 0.7
    assert real["knn_loo_accuracy"] - rand["knn_loo_accuracy"] >= 0.3
    assert real["probe_cv_accuracy"] >= 0.9 and real["probe_cv_accuracy"] > rand["probe_cv_accuracy"]
    assert real["silhouette"] > rand["silhouette"]
    assert table.iloc[-1]["weights"] == "random"  # ranked last
    assert (table["images"] == 2 * SEPARABILITY_PER_CLASS).all() and (table["images_per_s"] > 0).all()


def test_feature_maps_of_the_full_dataset(cats_vs_dogs):
    ds = scan_folder(cats_vs_dogs)
    for split in ("train", "validation"):
        extract_features(ds, LITE0, split=split, pooling="avg")  # cached by the tests above
    start = time.perf_counter()
    pca = embedding.feature_map(ds, LITE0, method="pca")
    pca_s = time.perf_counter() - start
    start = time.perf_counter()
    tsne = embedding.feature_map(ds, LITE0, method="tsne")
    tsne_s = time.perf_counter() - start
    start = time.perf_counter()
    again = embedding.feature_map(ds, LITE0, method="tsne")
    cached_s = time.perf_counter() - start
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"\nfeature maps of {len(pca.frame):,} photos: PCA {pca_s:.2f} s (projection {pca.seconds:.2f} s); "
          f"t-SNE {tsne_s:.1f} s (PCA to 50 + t-SNE {tsne.seconds:.1f} s, "
          f"{tsne.info.get('openmp_threads') or 'default'} OpenMP threads); "
          f"t-SNE again from the cache {cached_s:.2f} s; load average {load:.1f} on {cores} cores")
    assert len(pca.frame) == 3000 and len(tsne.frame) == 3000 and again.from_cache
    assert set(tsne.frame["split"]) == {"train", "validation"}
    # The classes fall apart on the t-SNE map: a 5-NN vote in the 2-D plane is still right >= 90%.
    from sklearn.neighbors import NearestNeighbors

    coords = tsne.frame[["x", "y"]].to_numpy()
    y = (tsne.frame["label"] == "dogs").to_numpy().astype(int)
    nn = NearestNeighbors(n_neighbors=6).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    map_knn = float(((y[nn].mean(axis=1) > 0.5).astype(int) == y).mean())
    print(f"5-NN accuracy in the 2-D t-SNE plane: {map_knn:.3f}")
    assert map_knn >= 0.9
    # Time limits of the issue (3 s, 30 s) on a machine with the CPU to itself; stretched by how
    # oversubscribed it is right now (2-core machines here are shared with other work).
    stretch = max(1.0, load / cores)
    assert pca_s <= 3.0 * stretch
    assert tsne_s <= 30.0 * stretch
    assert cached_s <= 3.0 * stretch
