"""core.verdicts and the paired comparison of runs: intervals by stated methods, McNemar
exact verdicts, Holm over several pairs, and the "best" marker only where the data resolves it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import verdicts
from core.runs import compare, display
from core.runs.store import RunStore
from core.train.evaluation import summarize


def test_wilson_matches_the_textbook_interval_and_stays_in_range():
    low, high = verdicts.wilson(56, 60)  # 93.3% of 60, the example
    assert (round(low * 100, 1), round(high * 100, 1)) == (84.1, 97.4)
    assert verdicts.wilson(0, 10)[0] == 0.0 and verdicts.wilson(10, 10)[1] == 1.0
    assert verdicts.interval_text(56 / 60, low, high) == "93.3% (95% CI 84.1–97.4%)"


def test_mcnemar_exact_against_the_binomial_and_interval_agrees_with_the_test():
    a = np.r_[np.ones(50, bool), np.zeros(10, bool)]
    b = a.copy()
    b[0] = False  # one image apart
    t = verdicts.paired(a, b)
    assert (t.a_only, t.b_only, t.p) == (1, 0, 1.0) and t.low < 0 < t.high
    far = np.r_[np.zeros(20, bool), np.ones(40, bool)]  # b wrong on 20 images a gets right, nothing the other way
    t = verdicts.paired(a | True, far)
    assert t.p == pytest.approx(2 * 0.5 ** 20) and t.low > 0
    for a_only, b_only in [(9, 2), (10, 2), (8, 1), (6, 0)]:  # the interval excludes 0 exactly when p < 0.05
        x = np.r_[np.ones(a_only, bool), np.zeros(b_only, bool), np.ones(30, bool)]
        y = np.r_[np.zeros(a_only, bool), np.ones(b_only, bool), np.ones(30, bool)]
        t = verdicts.paired(x, y)
        assert (t.p < 0.05) == (t.low > 0)


def test_holm_steps_down_and_stays_monotone():
    assert verdicts.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_best_goes_to_a_resolved_winner_or_the_cheapest_within_noise():
    rng = np.random.default_rng(0)
    truth = rng.random(60) < 0.9
    close = truth.copy()
    close[np.flatnonzero(truth)[0]] = False  # one image apart
    poor = rng.random(60) < 0.4
    out = verdicts.compare_with_leader([
        verdicts.Entry("feature extraction", truth, truth.mean(), 60, cost=20.0),
        verdicts.Entry("linear probe", close, close.mean(), 60, cost=5.0),
        verdicts.Entry("pixels", poor, poor.mean(), 60, cost=1.0)])
    by = {v.name: v for v in out}
    assert by["linear probe"].resolved is False and by["pixels"].resolved is True
    assert by["linear probe"].best and not by["feature extraction"].best  # the cheaper of the unresolved
    assert "not resolved on 60 images" in by["linear probe"].text and "Holm" in by["linear probe"].text
    assert "resolved on 60 images" in by["pixels"].text
    alone = verdicts.compare_with_leader([verdicts.Entry("a", truth, truth.mean(), 60, 9.0),
                                          verdicts.Entry("b", poor, poor.mean(), 60, 1.0)])
    assert alone[0].best and alone[0].name == "a" and "marked best" in alone[0].text


def test_balanced_interval_covers_the_figure_and_summaries_store_intervals():
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    pred = np.r_[np.zeros(90, int), np.ones(3, int), np.zeros(7, int)]
    probs = np.eye(2)[pred]
    m, _ = summarize(probs, y, ["big", "small"], [f"{i}.png" for i in range(100)])
    assert m["val_accuracy"] == pytest.approx(0.93) and m["balanced_accuracy"] == pytest.approx(0.65)
    lo, hi = m["balanced_accuracy_ci"]
    assert lo < 0.65 < hi and hi - lo > 0.2  # 10 images of the small class: a wide interval
    assert m["worst_class"] == "small" and m["worst_class_recall"] == pytest.approx(0.3)
    assert m["val_accuracy_ci"][0] < 0.93 < m["val_accuracy_ci"][1]
    lines = display.uncertainty_lines(m)
    assert lines[0].startswith("accuracy:  93.0% (95% CI ") and "Wilson" in lines[0]
    assert lines[1].startswith("balanced:  65.0% (95% CI ") and "bootstrap" in lines[1]
    assert "worst class recall 30.0% (small)" in lines[1]
    summary = display.with_uncertainty(["name", "accuracy:  93.0% on 100 validation images", "time: 1 s"], m)
    assert summary[0] == "name" and summary[1] == lines[0] and summary[-1] == "time: 1 s" and len(summary) == 4


def _run(store, name, correct, seconds, strategy="linear_probe"):
    run = store.create({"strategy": strategy, "dataset": "/d", "backbone": "b", "seed": 1}, name=name)
    run.set_status("running")
    paths = [f"/d/validation/{i:03d}.png" for i in range(len(correct))]
    run.write_predictions(pd.DataFrame({"path": paths, "true": "a", "predicted": "a", "correct": correct}))
    run.write_metrics({"val_accuracy": float(np.mean(correct)), "val_images": len(correct), "train_seconds": seconds})
    run.set_status("done")
    return run


def test_runs_one_image_apart_are_not_resolved_and_far_apart_are():
    store = RunStore()
    base = np.r_[np.ones(56, bool), np.zeros(4, bool)]  # 93.3% of 60
    one_less = base.copy()
    one_less[0] = False  # 91.7%: one image apart
    far = np.r_[np.ones(30, bool), np.zeros(30, bool)]  # 50%
    features, probe = _run(store, "Feature extraction", base, 20.0), _run(store, "Linear probe", one_less, 5.0)
    pixels = _run(store, "Pixel baseline", far, 2.0)
    table = compare.comparison_table(store.list())
    assert table.set_index("run_id").loc[features.id, "val_ci_low"] == pytest.approx(verdicts.wilson(56, 60)[0])
    v = compare.paired_verdicts(table, lambda rid: store.get(rid).predictions()).set_index("run_id")
    assert v.loc[probe.id, "resolved"] == False and "not resolved on 60 validation images" in v.loc[probe.id, "verdict"]  # noqa: E712
    assert v.loc[pixels.id, "resolved"] == True and "resolved on 60" in v.loc[pixels.id, "verdict"]  # noqa: E712
    assert v.loc[probe.id, "best"] and not v.loc[features.id, "best"]  # the cheaper of the unresolved pair
    assert "leads Linear probe by 1.7 points" in v.loc[probe.id, "verdict"]
    assert any("Holm" in line for line in compare.verdict_lines(v.reset_index()))
    # two runs alone, far apart: the leader is the resolved winner
    store2 = RunStore(store.root.parent / "runs2")
    a, b = _run(store2, "A", base, 50.0), _run(store2, "B", far, 1.0)
    v2 = compare.paired_verdicts(compare.comparison_table(store2.list()),
                                 lambda rid: store2.get(rid).predictions()).set_index("run_id")
    assert v2.loc[a.id, "best"] and v2.loc[b.id, "resolved"] == True  # noqa: E712


def test_the_advisor_check_is_a_paired_test_when_runs_share_their_images():
    store = RunStore()
    base = np.r_[np.ones(56, bool), np.zeros(4, bool)]
    one_less = base.copy()
    one_less[0] = False
    _run(store, "features", base, 5.0, "feature_extraction")
    _run(store, "probe", one_less, 5.0, "linear_probe")
    table = compare.comparison_table(store.list())
    v = compare.advisor_verdict(table, "linear_probe", lambda rid: store.get(rid).predictions())
    assert v["paired"] and v["agreed"] is True and "not resolved on 60 validation images" in v["message"]


def test_runs_on_different_images_are_not_paired():
    store = RunStore()
    a = _run(store, "A", np.ones(40, bool), 1.0)
    b = store.create({"strategy": "linear_probe", "dataset": "/d"}, name="B")
    b.set_status("running")
    b.write_predictions(pd.DataFrame({"path": [f"/other/{i}.png" for i in range(40)], "correct": [True] * 20 + [False] * 20}))
    b.write_metrics({"val_accuracy": 0.5, "val_images": 40, "train_seconds": 1.0})
    b.set_status("done")
    v = compare.paired_verdicts(compare.comparison_table(store.list()), lambda rid: store.get(rid).predictions())
    assert v["group"].nunique() == 2 and v["resolved"].isna().all() and v.set_index("run_id").loc[a.id, "best"]


def test_the_recommended_line_starts_the_advised_run_with_every_setting():
    """``advise`` prints one ``python -m core train`` line; parsed back, it gives the advised strategy,
    backbone, feature layer, layers to unfreeze and measured augmentation."""
    import shlex

    from core.__main__ import parser, train_config
    from core.analysis.advisor import Advice

    augment = {"flip": "", "fill": "constant", "fill_value": 255.0, "rotation": 0.0, "zoom": 0.0,
               "translation": 0.0, "contrast": 0.1, "reasons": []}
    cases = [Advice("small", "different", "feature_extraction", 0, feature_layer="block_5_add",
                    backbone="efficientnet_lite1", figures={"augment": augment}),
             Advice("large", "different", "fine_tune", 24, backbone="efficientnet_lite0", figures={"augment": augment}),
             Advice("small", "different", "frozen_augment", 0, backbone="efficientnet_lite0",
                    figures={"augment": augment})]
    for advice in cases:
        line = shlex.join(["python", "-m", "core", "train", "--dataset", "/data/my set", *advice.train_args()])
        cfg = train_config(parser().parse_args(shlex.split(line)[3:]))
        assert (cfg.strategy, cfg.backbone, cfg.dataset) == (advice.strategy, advice.backbone, "/data/my set")
        assert cfg.feature_layer == advice.feature_layer
        if advice.unfreeze_layers:
            assert cfg.fine_tune_layers == advice.unfreeze_layers
        if advice.strategy != "feature_extraction":  # the strategies that augment get the measured augmentation
            a = cfg.augment
            assert (a.flip, a.fill, a.fill_value, a.rotation, a.zoom, a.translation, a.contrast) == (
                "", "constant", 255.0, 0.0, 0.0, 0.0, 0.1)
        else:
            assert "--flip" not in line
    off = Advice("small", "different", "frozen_augment", 0, backbone="efficientnet_lite0",
                 figures={"augment": {**augment, "enabled": False}})
    assert "--no-augment" in off.train_args()
    cfg = train_config(parser().parse_args(["train", "--dataset", "/d", *off.train_args()]))
    assert cfg.augment.enabled is False


def test_separability_table_marks_best_only_where_the_photos_resolve_it():
    from core.analysis.separability import TABLE_COLUMNS, _add_verdicts, table_verdict

    base = np.r_[np.ones(204, bool), np.zeros(36, bool)]  # 85.0% of 240, the example
    close = base.copy()
    close[:4] = False  # 83.3%: four photos apart
    far = np.r_[np.ones(120, bool), np.zeros(120, bool)]
    rows = [{"backbone": "Lite0", "weights": "ImageNet", "knn_correct": base, "probe_correct": base, "images_per_s": 50.0},
            {"backbone": "Lite2", "weights": "ImageNet", "knn_correct": close, "probe_correct": close, "images_per_s": 20.0},
            {"backbone": "Lite0", "weights": "random", "knn_correct": far, "probe_correct": far, "images_per_s": 80.0}]
    for r in rows:
        r.update(knn_loo_accuracy=float(r["knn_correct"].mean()), chance=0.5)
    _add_verdicts(rows)
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    assert "knn_correct" not in table.columns and table["knn_ci_low"].notna().all()
    assert table.loc[1, "resolved"] == False and table.loc[2, "resolved"] == True  # noqa: E712
    assert table.loc[0, "best"] and not table.loc[1, "best"]  # a tie goes to the faster backbone (Lite0)
    text = table_verdict(table, "240 photos")
    assert text.startswith("Best separated by Lite0 · ImageNet: 85.0% 5-NN accuracy (95% CI ")
    assert "not resolved on 240 photos" in text and "Holm" in text


def test_advisor_candidates_carry_intervals_and_paired_verdicts():
    from core.analysis import advisor

    top = np.r_[np.ones(110, bool), np.zeros(10, bool)]
    block = top.copy()
    block[0] = False
    pixels = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    candidates = [{"candidate": c, "accuracy": float(x.mean()), "_correct": x, "predicted_seconds": s}
                  for c, x, s in (("top", top, 30.0), ("block", block, 10.0), ("pixels", pixels, 1.0))]
    candidates.append({"candidate": "scratch trial", "accuracy": 0.7, "images": 40, "predicted_seconds": 99.0})
    advisor._candidate_verdicts(candidates)
    by = {c["candidate"]: c for c in candidates}
    assert all("_correct" not in c and c["ci_low"] <= c["accuracy"] <= c["ci_high"] for c in candidates)
    assert by["block"]["resolved"] is False and by["pixels"]["resolved"] is True
    assert by["scratch trial"]["resolved"] is None and "no paired test" in by["scratch trial"]["verdict"]
    # the scratch trial cannot be told from the leader by a paired test either, so the quickest of
    # those the sample leaves within noise of it carries the marker: the block, not the slower top
    assert by["block"]["best"] and not by["top"]["best"]
    confidence = advisor._confidence(candidates, 120)
    assert confidence.startswith("Confidence: a close call") and "block" in confidence


def test_identical_runs_and_a_cheapest_leader_are_said_plainly():
    same = np.r_[np.ones(50, bool), np.zeros(10, bool)]
    out = verdicts.compare_with_leader([verdicts.Entry("a", same, same.mean(), 60, cost=1.0),
                                        verdicts.Entry("b", same.copy(), same.mean(), 60, cost=2.0)])
    assert out[0].best and "as the cheapest of those within noise" in out[0].text
    assert "image for image" in out[1].text and out[1].resolved is False
