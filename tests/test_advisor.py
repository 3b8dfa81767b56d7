"""The strategy advisor on constructed cases: each textbook cell (small/large x similar/different)
reached with measured figures in the reasons, and the pick made from what was measured (top
features, an earlier block, the pixel baseline); the measure itself: tests/test_separability.py."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest

from core.analysis import advisor
from core.data.dataset import Dataset, ImageRecord

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)

DIM = 32


# ---------------------------------------------------------------- advise() on constructed datasets

def fake_dataset(per_class: int, classes=("cats", "dogs")) -> Dataset:
    records = [ImageRecord(f"/nowhere/{c}/{i}.jpg", c, "train", 64, 64, "RGB", "JPEG", 1000)
               for c in classes for i in range(per_class)]
    records += [ImageRecord(f"/nowhere/val/{c}/{i}.jpg", c, "validation", 64, 64, "RGB", "JPEG", 1000)
                for c in classes for i in range(10)]
    return Dataset("constructed", "/nowhere", list(classes), records, fingerprint=f"fp-{per_class}")


@pytest.fixture
def fake_features(monkeypatch):
    """Replace feature extraction (and the backbone's depth) with synthetic features:
    class blobs ``shift`` apart; records the calls."""
    state = {"shift": 8.0, "calls": [], "shift_by_backbone": {}}

    def extract_features(ds, backbone, *, split="train", **kwargs):
        state["calls"].append({"n": len(ds.split(split)), "backbone": backbone, "split": split, **kwargs})
        y = ds.labels(split)
        rng = np.random.default_rng(len(y))
        X = rng.normal(size=(len(y), DIM)) + 1.0
        X[np.arange(len(y)), y] += state["shift_by_backbone"].get(backbone, state["shift"])
        return SimpleNamespace(usable=lambda: (X.astype("float32"), y))

    def load_backbone(name, weights="imagenet", input_size=None, seed=0):
        return SimpleNamespace(base=SimpleNamespace(layers=[object()] * 150))

    monkeypatch.setattr(advisor, "_measure_scratch", lambda *a, **k: state.get("scratch", {}))  # needs photos
    monkeypatch.setattr("core.features.dataset.extract_features", extract_features)
    monkeypatch.setattr("core.nets.backbones.load_backbone", load_backbone)
    monkeypatch.setattr("core.nets.loaded._HELD", OrderedDict())  # the fake backbone stays in this test
    return state


CASES = [
    # per class, blob shift, size, similarity, textbook cell, pick (only top features measured:
    # the fake photos do not decode, the fake backbone has no blocks), unfreeze (of 150 layers)
    (200, 8.0, "small", "similar", "feature_extraction", "feature_extraction", 0),
    (1200, 8.0, "large", "similar", "fine_tune", "feature_extraction", 0),  # features leave no room
    (200, 0.0, "small", "different", "frozen_augment", "feature_extraction", 0),
    (1200, 0.0, "large", "different", "fine_tune", "fine_tune", 60),
]


@pytest.mark.parametrize("per_class, shift, size, similarity, textbook, strategy, unfreeze", CASES)
def test_advise_each_cell(fake_features, per_class, shift, size, similarity, textbook, strategy, unfreeze):
    fake_features["shift"] = shift
    advice = advisor.advise(fake_dataset(per_class), backbone="mobilenet_v2", seed=0)
    assert (advice.size, advice.similarity, advice.strategy) == (size, similarity, strategy)
    assert advice.textbook == textbook and [c["strategy"] for c in advice.candidates] == ["linear_probe"]
    assert advice.unfreeze_layers == unfreeze

    f = advice.figures
    assert f["smallest_class"] == per_class and f["train_images"] == 2 * per_class
    assert f["sample_size"] == 2 * advisor.SAMPLE_PER_CLASS  # a seeded sample, not the whole dataset
    assert fake_features["calls"][-1]["n"] == 2 * advisor.SAMPLE_PER_CLASS
    assert f["chance"] == pytest.approx(0.5)
    assert f["skill"] == pytest.approx((f["probe_cv_accuracy"] - 0.5) / 0.5)
    if similarity == "similar":
        assert f["probe_cv_accuracy"] >= 0.95 and f["skill"] >= advisor.SIMILAR_SKILL
    else:
        assert f["probe_cv_accuracy"] <= 0.7 and f["skill"] < advisor.SIMILAR_SKILL

    text = "\n".join(advice.reasons)
    assert f"{per_class:,} training images" in text
    assert f"counts as {size}" in text
    assert f"{f['probe_cv_accuracy']:.1%}" in text and f"leave-one-out: {f['knn_loo_accuracy']:.1%}" in text
    assert f["probe_folds"] == 5 and "5-fold" in text
    assert f"chance: {f['chance']:.1%}" in text and f"skill of {f['skill']:.2f}" in text
    assert ("similar to ImageNet" if similarity == "similar" else "different from ImageNet") in text
    assert "MobileNetV2" in text
    if unfreeze:
        assert f"top {unfreeze} of 150 layers" in text
    else:
        assert "Unfreeze" not in text

    table = advice.table()
    assert list(table.index) == ["small", "large"] and list(table.columns) == ["similar", "different"]
    marked = [(r, c) for r in table.index for c in table.columns if "◀ this dataset" in table.loc[r, c]]
    assert marked == [(size, similarity)]
    from core.train import registry

    assert table.loc[size, similarity].startswith(registry.label(textbook))
    assert advice.to_dict()["strategy"] == strategy


def test_size_threshold_is_the_smallest_class(fake_features):
    ds = fake_dataset(1200)
    # drop most dogs: the smallest class decides
    ds.records = [r for r in ds.records if not (r.label == "dogs" and r.split == "train"
                                                and int(r.path.rsplit("/", 1)[1].split(".")[0]) >= 999)]
    advice = advisor.advise(ds, backbone="mobilenet_v2")
    assert advice.figures["smallest_class"] == 999 and advice.size == "small"
    assert "999 training images" in advice.reasons[0] and "under 1,000" in advice.reasons[0]


# ---------------------------------------------------------------- the pick from measured candidates

def test_pick_trains_on_the_data_when_imagenet_features_do_not_beat_the_pixels():
    """Digits: the issue's measured figures (probe 0.89, pixels 0.97) on a 600-image sample."""
    strategy, layer, why = advisor.pick({"top": 0.89, "block": 0.90, "block_layer": "b5", "pixels": 0.96},
                                        600, "small", 143)
    assert (strategy, layer) == ("scratch", "") and "far from ImageNet" in why[0] and "96.0%" in why[0]


def test_pick_keeps_the_pixel_baseline_when_too_few_images_for_a_network():
    strategy, _, why = advisor.pick({"top": 0.6, "pixels": 0.8}, 40, "small", advisor.SCRATCH_MIN_PER_CLASS - 1)
    assert strategy == "pixel_baseline" and "too little" in why[0]


def test_pick_transfers_from_the_top_or_a_better_earlier_block():
    """cats_vs_dogs-like: features far above the pixels. A block only wins beyond the noise."""
    assert advisor.pick({"top": 0.99, "block": 0.9, "block_layer": "b5", "pixels": 0.6}, 120, "small", 1000)[:2] == \
        ("feature_extraction", "")
    # large: fine-tune only when the frozen features leave room
    assert advisor.pick({"top": 0.99, "pixels": 0.6, "chance": 0.5}, 120, "large", 5000)[0] == "feature_extraction"
    assert advisor.pick({"top": 0.7, "pixels": 0.4, "chance": 0.5}, 600, "large", 5000)[0] == "fine_tune"
    strategy, layer, why = advisor.pick({"top": 0.70, "block": 0.85, "block_layer": "b5", "pixels": 0.5},
                                        600, "small", 100)
    assert (strategy, layer) == ("feature_extraction", "b5") and "earlier block b5" in " ".join(why)
    # within the noise of a 600-image sample, the top features stay
    assert advisor.pick({"top": 0.80, "block": 0.81, "block_layer": "b5"}, 600, "small", 100)[1] == ""


def test_advise_reports_every_measured_candidate_and_overrides_the_textbook(fake_features, monkeypatch):
    """Far from ImageNet (features at chance) but the raw pixels separate the classes: the textbook
    cell says frozen base + augmentation, the measurement says train on the data."""
    fake_features["shift"] = 0.0
    monkeypatch.setattr(advisor, "_measure_pixels", lambda sample, seed, steps, *backbone: {"pixels": 0.95, "pixel_seconds": 2.0})
    monkeypatch.setattr(advisor, "_measure_block", lambda *a, **k: {"block": 0.55, "block_layer": "block5",
                                                                   "block_seconds": 3.0})
    advice = advisor.advise(fake_dataset(200), backbone="mobilenet_v2", seed=0)
    assert advice.textbook == "frozen_augment" and advice.strategy == "scratch"
    assert [c["strategy"] for c in advice.candidates][0] == "pixel_baseline"
    assert {c["strategy"] for c in advice.candidates} == {"pixel_baseline", "feature_extraction", "linear_probe"}
    text = "\n".join(advice.reasons)
    assert "pixel baseline (logistic regression on raw pixels) 95.0%" in text and "block block5 55.0%" in text
    assert "measurement overrides it" in text and advice.figures["pixels"] == 0.95
    assert advice.confidence.startswith("Confidence: clear") and advice.confidence in advice.reasons
    best = advice.candidates[0]
    assert 0 < best["noise"] < 0.1 and best["predicted_seconds"] > best["seconds"]  # scaled to every image


def test_pick_moves_to_another_backbone_only_when_it_separates_clearly_better():
    far = {"top": 0.80, "others": {"lite2": 0.95}, "names": {"lite2": "Lite2"}, "chance": 0.5}
    strategy, layer, why = advisor.pick(far, 600, "small", 300)
    assert (strategy, layer) == ("feature_extraction", "") and advisor.better_backbone(far, 600) == ("lite2", 0.95)
    assert "Lite2 (95.0%) separates the sample better" in " ".join(why)
    near = {**far, "others": {"lite2": 0.81}}  # within the noise of 600 images
    assert advisor.better_backbone(near, 600) == ("", 0.0)
    assert advisor.better_backbone({**far, "block": 0.96, "block_layer": "b5"}, 600) == ("", 0.0)  # own block wins


def test_advise_probes_every_other_backbone_and_recommends_the_clearly_better_one(fake_features):
    fake_features["shift"], fake_features["shift_by_backbone"] = 0.6, {"resnet50": 8.0}
    advice = advisor.advise(fake_dataset(200), backbone="mobilenet_v2", seed=0,
                            compare=["vgg16", "resnet50"])
    probed = {c["backbone"] for c in advice.candidates if c["strategy"] == "linear_probe"}
    assert probed == {"mobilenet_v2", "vgg16", "resnet50"}
    assert advice.backbone == "resnet50" and advice.candidates[0]["backbone"] == "resnet50"
    assert "with ResNet50" in " ".join(advice.reasons)
    fake_features["shift_by_backbone"] = {}
    same = advisor.advise(fake_dataset(201), backbone="mobilenet_v2", seed=0, compare=["resnet50"])
    assert same.backbone == "mobilenet_v2"  # no clear winner: stay on the backbone asked about


def test_advise_reports_each_step_and_stops_when_cancelled(fake_features):
    from core.errors import Cancelled

    seen = []
    advisor.advise(fake_dataset(200), backbone="mobilenet_v2", seed=0, compare=["vgg16"],
                   progress=lambda text, fraction: seen.append((text, fraction)))
    # five planned: the from-scratch trial is left out when the features leave no room above them
    assert seen[0][0].startswith("Step 1 of 5: features of the sample with") and seen[-1][0].startswith("Step 4 of 4")
    assert [f for _, f in seen] == sorted(f for _, f in seen) and 0.0 <= seen[0][1] and seen[-1][1] <= 1.0
    calls = len(fake_features["calls"])
    with pytest.raises(Cancelled, match="cancelled"):
        advisor.advise(fake_dataset(202), backbone="mobilenet_v2", seed=0, compare=["vgg16"],
                       progress=lambda text, fraction: None, should_stop=lambda: len(fake_features["calls"]) > calls)
    assert len(fake_features["calls"]) == calls + 1  # stopped before the next backbone's extraction


def test_scratch_trial_runs_only_where_it_could_change_the_pick_and_wins_when_it_matches():
    room = {"top": 0.90, "pixels": 0.30, "chance": 0.1}
    assert advisor._scratch_may_win(room, 600, "small", 200)
    assert not advisor._scratch_may_win({**room, "top": 0.999}, 600, "small", 200)  # no room above the features
    assert not advisor._scratch_may_win({**room, "pixels": 0.95}, 600, "small", 200)  # the pixels decided already
    assert not advisor._scratch_may_win(room, 600, "small", 20)  # too few images a class for a CNN
    assert advisor.pick({**room, "scratch": 0.89}, 600, "small", 200)[0] == "scratch"  # within the noise
    assert advisor.pick({**room, "scratch": 0.80}, 600, "small", 200)[0] == "feature_extraction"


def test_advise_lists_the_scratch_trial_as_a_candidate(fake_features):
    fake_features["shift"] = 1.0
    fake_features["scratch"] = {"scratch": 0.99, "scratch_seconds": 20.0, "scratch_epochs": 12, "scratch_val_images": 20}
    advice = advisor.advise(fake_dataset(200), backbone="mobilenet_v2", seed=0, compare=[])
    assert advice.strategy == "scratch" and advice.candidates[0]["strategy"] == "scratch"
    best = advice.candidates[0]  # 30 default epochs for the trial's 12; 400 training images for 120 sampled
    assert best["predicted_seconds"] == pytest.approx(20.0 * 30 / 12 * 400 / 120)
    assert any("trained from scratch on the sample" in r for r in advice.reasons)


def _candidate(name: str, accuracy: float, seconds: float, noise: float = 0.02) -> dict:
    return {"candidate": name, "accuracy": accuracy, "seconds": seconds, "predicted_seconds": seconds, "noise": noise}


def test_confidence_tells_a_clear_lead_from_a_close_call():
    clear = advisor._confidence([_candidate("a", 0.95, 1), _candidate("b", 0.80, 1)], 600)
    close = advisor._confidence([_candidate("a", 0.95, 1), _candidate("b", 0.94, 1)], 600)
    assert clear.startswith("Confidence: clear") and "15.0%" in clear
    assert close.startswith("Confidence: a close call") and "1.0% apart" in close


def test_best_accuracy_per_minute_is_the_quickest_candidate_within_the_noise():
    ranked = [_candidate("slow best", 0.95, 100), _candidate("quick close", 0.94, 10), _candidate("quickest far", 0.7, 1)]
    assert advisor._quickest_within_noise(ranked)["candidate"] == "quick close"
    assert advisor._quickest_within_noise(ranked[:1])["candidate"] == "slow best"


def test_advise_on_digit_photos_measures_the_pixels_and_the_flips(fake_features, monkeypatch, tmp_path):
    """The pixel baseline and the flip decision run on the decoded sample itself."""
    from core.data.dataset import scan_folder
    from tests.digits import write_digits

    fake_features["shift"] = 0.0
    monkeypatch.setattr(advisor, "_measure_block", lambda *a, **k: {})
    ds = scan_folder(write_digits(tmp_path / "digits", per_class=20), val_fraction=0.25, seed=0)
    advice = advisor.advise(ds, backbone="mobilenet_v2", seed=0, sample_per_class=15)
    assert advice.figures["pixels"] >= 0.8 and advice.strategy == "pixel_baseline"  # 15 a class: too few for a CNN
    assert advice.figures["augment"]["flip"] == "" and advice.figures["augment"]["fill"] == "constant"
    assert advice.figures["augment"]["fill_value"] > 240  # the paper's colour, for the trial's fill too
    assert any("Horizontal flip left out" in r for r in advice.reasons)


def test_pick_reads_leads_with_a_paired_test_on_the_sampled_images():
    """Figures scored image by image on the same sample are compared by McNemar's exact test: a
    2-point lead the unpaired noise of 600 images hides is resolved when the block gets 12 more images
    right and none fewer, and a 3-point lead made of 90 against 72 discordant images is not."""
    rng = np.random.default_rng(0)
    top = rng.random(600) < 0.8
    block = top.copy()
    block[np.flatnonzero(~top)[:12]] = True  # right on 12 images the top features miss, wrong on none
    measured = {"top": top.mean(), "top_correct": top, "block": block.mean(), "block_correct": block,
                "block_layer": "b5", "chance": 0.5}
    assert block.mean() - top.mean() == pytest.approx(0.02)
    assert advisor.pick(measured, 600, "small", 300)[1] == "b5"
    assert advisor.pick({k: v for k, v in measured.items() if not k.endswith("_correct")}, 600, "small", 300)[1] == ""
    noisy = top.copy()
    noisy[np.flatnonzero(~top)[:90]] = True  # 90 images only the block gets right ...
    noisy[np.flatnonzero(top)[:72]] = False  # ... and 72 only the top features get right
    assert not advisor.ahead({**measured, "block": noisy.mean(), "block_correct": noisy}, "block", "top", 600)
    pixels = top.copy()
    pixels[np.flatnonzero(top)[:15]] = False  # the pixels miss 15 images the features get right, gain none
    paired = {"top": top.mean(), "top_correct": top, "pixels": pixels.mean(), "pixels_correct": pixels, "chance": 0.5}
    assert advisor.pick(paired, 600, "small", 300)[0] == "feature_extraction"  # features resolved ahead of pixels
    unpaired = {k: v for k, v in paired.items() if not k.endswith("_correct")}
    assert advisor.pick(unpaired, 600, "small", 300)[0] == "scratch"  # 2.5 points: inside the unpaired noise
