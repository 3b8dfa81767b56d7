"""Auto-labelling (zero-shot, few-shot, compare) on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import builder as db
from core.analysis import labeling
from core.errors import TransferLabError
from tests import tiny_backbone
from tests.helpers import assert_matches_reference, write_images

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)

TINY = tiny_backbone.NAME



@pytest.fixture
def inbox(tmp_path) -> tuple[Path, dict[str, str]]:
    """Unlabelled photos: 6 red (cats), 6 green (dogs) in one folder, a bad file, and the truth."""
    folder = tmp_path / "inbox"
    truth = {}
    for label, idx in (("cats", 0), ("dogs", 1)):
        for p in write_images(tmp_path / "gen" / label, idx, 6, size=(36, 36), seed=7):
            target = folder / f"{label[0]}_{p.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            p.rename(target)
            truth[str(target)] = label
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "readme.txt").write_text("hi")
    return folder, truth


@pytest.fixture
def pets(tmp_path) -> str:
    """A built dataset with 5 labelled photos of each of cats (red) and dogs (green)."""
    db.create_dataset("pets", ["cats", "dogs"])
    for label, idx in (("cats", 0), ("dogs", 1)):
        files = write_images(tmp_path / "lab" / label, idx, 5, size=(36, 36), seed=99)
        db.add_photos("pets", label, [(f.name, f) for f in files])
    return "pets"


def test_zero_shot_scores_sum_mapped_probabilities():
    probs = np.array([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    scores = labeling.zero_shot_scores(probs, {"a": [0], "b": [1, 2]}, ["a", "b"])
    np.testing.assert_allclose(scores, [[0.5, 0.5], [0.1, 0.9]])
    with pytest.raises(labeling.LabelingError, match="'b'"):
        labeling.zero_shot_scores(probs, {"a": [0], "b": []}, ["a", "b"])


# ---------------------------------------------------------------- ImageNet head

def test_pooled_head_found_for_keras_applications_and_refused_otherwise():
    import keras

    net = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), include_top=True)
    W, b = labeling._pooled_head(net)
    assert W.shape == (1280, 1000) and b.shape == (1000,)
    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    assert labeling._pooled_head(keras.Model(inputs, flat)) is None
    logits = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs))
    assert labeling._pooled_head(keras.Model(inputs, logits)) is None  # no softmax: not probabilities


def test_head_on_pooled_features_equals_the_full_classifier(tiny, inbox):
    from core.features.cache import extract_features

    folder, _ = inbox
    unl = labeling.scan_unlabelled(folder)
    fs = extract_features(unl, tiny, split="train", pooling="avg")
    head = labeling.imagenet_head(tiny)
    assert head is not None
    from_pooled = labeling.probabilities_from_pooled(fs.usable()[0], head)
    full, ok = labeling.classifier_probabilities(fs.paths, tiny)
    assert ok.all()
    assert_matches_reference(from_pooled, full, rtol=1e-7, atol=1e-5)


# ---------------------------------------------------------------- unlabelled photos

def test_scan_unlabelled_lists_bad_files(inbox):
    folder, truth = inbox
    unl = labeling.scan_unlabelled(folder)
    assert sorted(r.path for r in unl.records) == sorted(truth)
    reasons = {Path(b.path).name: b.reason for b in unl.bad_files}
    assert set(reasons) == {"broken.jpg", "readme.txt"}
    assert unl.classes == ["unlabelled"] and {r.split for r in unl.records} == {"train"}
    again = labeling.scan_unlabelled(folder)
    assert again.fingerprint == unl.fingerprint
    (folder / "b_new.png").write_bytes((folder / next(iter(truth)).split("/")[-1]).read_bytes())
    assert labeling.scan_unlabelled(folder).fingerprint != unl.fingerprint


def test_scan_unlabelled_errors(tmp_path):
    with pytest.raises(labeling.LabelingError, match="not found"):
        labeling.scan_unlabelled(tmp_path / "missing")
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(labeling.LabelingError, match="No readable photos"):
        labeling.scan_unlabelled(tmp_path / "only_bad")


# ---------------------------------------------------------------- auto-labelling

def accuracy(result: labeling.LabelResult, truth: dict[str, str], column: str = "suggestion") -> float:
    f = result.frame
    return float(np.mean([truth[p] == s for p, s in zip(f["path"], f[column])]))


def test_zero_shot_labels_from_imagenet_mapping(tiny, inbox):
    folder, truth = inbox
    result = labeling.auto_label(labeling.scan_unlabelled(folder), ["cats", "dogs"], tiny, method="zero_shot")
    assert accuracy(result, truth) == 1.0
    f = result.frame
    assert list(f.columns[:4]) == ["path", "file", "suggestion", "confidence"]
    assert (np.diff(f["confidence"]) <= 0).all(), "sorted most confident first"
    assert (f["confidence"] > 0.5).all() and (f["confidence"] <= 1.0).all()
    assert f["imagenet_top"].str.contains("%").all()
    assert {Path(b.path).name for b in result.bad_files} == {"broken.jpg", "readme.txt"}
    assert len(result.accepted(0.0)) == len(f) and len(result.accepted(1.01)) == 0


def test_zero_shot_with_a_wrong_mapping_gets_it_wrong(tiny, inbox):
    folder, truth = inbox
    swapped = {"cats": list(range(151, 269)), "dogs": list(range(281, 286))}
    result = labeling.auto_label(labeling.scan_unlabelled(folder), ["cats", "dogs"], tiny, method="zero_shot",
                                 mapping=swapped)
    assert accuracy(result, truth) == 0.0  # the mapping is what decides: the test can fail


@pytest.mark.parametrize("model", ["logreg", "knn"])
def test_few_shot_learns_from_the_labelled_photos(tiny, inbox, pets, model):
    folder, truth = inbox
    result = labeling.auto_label(labeling.scan_unlabelled(folder), db.classes(pets), tiny, method="few_shot",
                                 labelled=db.scan(pets), model=model)
    assert accuracy(result, truth) == 1.0
    assert "imagenet_top" not in result.frame and (result.frame["confidence"] > 0.5).all()


def test_few_shot_uses_labels_not_colours(tiny, inbox, tmp_path):
    """Swap the labelled photos' classes: few-shot follows them (zero-shot would not)."""
    folder, truth = inbox
    db.create_dataset("swapped", ["cats", "dogs"])
    for label, idx in (("cats", 1), ("dogs", 0)):
        files = write_images(tmp_path / "sw" / label, idx, 5, size=(36, 36), seed=5)
        db.add_photos("swapped", label, [(f.name, f) for f in files])
    result = labeling.auto_label(labeling.scan_unlabelled(folder), ["cats", "dogs"], tiny, method="few_shot",
                                 labelled=db.scan("swapped"))
    assert accuracy(result, truth) == 0.0


def test_compare_reports_both_and_agreement(tiny, inbox, pets):
    folder, truth = inbox
    result = labeling.auto_label(labeling.scan_unlabelled(folder), ["cats", "dogs"], tiny, method="compare",
                                 labelled=db.scan(pets))
    f = result.frame
    assert {"zero_shot", "few_shot", "agree", "zero_shot_confidence", "few_shot_confidence"} <= set(f.columns)
    assert f["agree"].all() and accuracy(result, truth) == 1.0
    np.testing.assert_allclose(f["confidence"], np.minimum(f["zero_shot_confidence"], f["few_shot_confidence"]))


def test_fallback_to_the_full_classifier_gives_the_same_labels(tiny, inbox, monkeypatch):
    folder, truth = inbox
    unl = labeling.scan_unlabelled(folder)
    with_head = labeling.auto_label(unl, ["cats", "dogs"], tiny)
    monkeypatch.setattr(labeling, "imagenet_head", lambda *a, **k: None)
    without = labeling.auto_label(unl, ["cats", "dogs"], tiny)
    a, b = (r.frame.sort_values("path").reset_index(drop=True) for r in (with_head, without))
    assert list(a["path"]) == list(b["path"]) and list(a["suggestion"]) == list(b["suggestion"])
    assert_matches_reference(a["confidence"], b["confidence"], rtol=1e-7, atol=1e-5)


def test_auto_label_refuses_with_reasons(tiny, inbox, pets):
    folder, _ = inbox
    unl = labeling.scan_unlabelled(folder)
    with pytest.raises(labeling.LabelingError, match="two classes"):
        labeling.auto_label(unl, ["cats"], tiny)
    with pytest.raises(labeling.LabelingError, match="labelled photos"):
        labeling.auto_label(unl, ["cats", "dogs"], tiny, method="few_shot")
    db.add_class(pets, "birds")
    with pytest.raises(labeling.LabelingError, match="'birds'"):
        labeling.auto_label(unl, db.classes(pets), tiny, method="few_shot", labelled=db.scan(pets))
    with pytest.raises(labeling.LabelingError, match="'xyzzy'"):
        labeling.auto_label(unl, ["cats", "xyzzy"], tiny, method="zero_shot")
    with pytest.raises(labeling.LabelingError, match="Unknown method"):
        labeling.auto_label(unl, ["cats", "dogs"], tiny, method="magic")
    with pytest.raises(TransferLabError, match="ImageNet weights"):
        labeling.auto_label(unl, ["cats", "dogs"], tiny, weights=None)


def test_progress_is_reported_by_stage(tiny, inbox, pets):
    folder, _ = inbox
    seen = []
    labeling.auto_label(labeling.scan_unlabelled(folder), ["cats", "dogs"], tiny, method="compare",
                        labelled=db.scan(pets), progress=lambda stage, p: seen.append((stage, p.done, p.total)))
    stages = {s for s, _, _ in seen}
    assert "photos to label" in stages and any(s.startswith("labelled photos") for s in stages)
    assert all(done <= total for _, done, total in seen)


def test_scan_unlabelled_refuses_huge_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(labeling, "MAX_UNLABELLED", 3)
    write_images(tmp_path / "many", 0, 5)
    with pytest.raises(labeling.LabelingError, match="more than 3 files"):
        labeling.scan_unlabelled(tmp_path / "many")
