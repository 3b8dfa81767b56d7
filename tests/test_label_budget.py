"""core.analysis.label_budget: the learning curve on features, the law fitted to it, its sentence, its
refusal, the advisor's cheap curve on its sample, the Dataset page's section, and (``real``) the honest
check: fitted on at most half the training photos, it predicts the full-data probe within 2 points on
cats_vs_dogs and on oriented gratings (far from ImageNet)."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis import label_budget as lb
from tests.helpers import write_images
from tests.test_advisor import fake_dataset, fake_features  # noqa: F401  (fixture)


def _blobs(per_class: int, seed: int, dims: int = 60, shift: float = 0.35):
    """Two overlapping Gaussian classes in many dimensions: a probe gains with every photo it is given."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(per_class, int), np.ones(per_class, int)]
    X = rng.normal(size=(2 * per_class, dims))
    X[y == 1, :] += shift
    return X, y


@pytest.fixture(scope="module")
def rising():
    X, y = _blobs(200, 0)
    Xv, yv = _blobs(300, 1)
    return lb.budget(X, y, Xv, yv)


def test_the_curve_rises_with_intervals_on_every_point(rising):
    pts, curve = rising["curve"].points, rising["curve"]
    assert curve.evaluation == "validation" and curve.n_eval == 600 and curve.correct.shape[1] == lb.SEEDS
    assert pts["per_class"].is_monotonic_increasing and pts["per_class"].iloc[-1] == 200
    assert pts["per_class"].iloc[0] <= 200 / 16 and pts["per_class"].is_unique  # most points at the small end
    assert pts["accuracy"].iloc[-1] > pts["accuracy"].iloc[0] + 0.1  # more photos pay here
    smooth = pts["accuracy"].rolling(3, center=True, min_periods=1).mean()
    assert (np.diff(smooth) > -0.02).all()  # rising, up to the noise of a few seeds
    assert (pts["ci_low"] < pts["accuracy"]).all() and (pts["accuracy"] < pts["ci_high"]).all()
    assert (pts["ci_high"] - pts["ci_low"]).between(0.02, 0.2).all()  # 95% on 600 validation photos
    assert (pts["seed_min"] <= pts["accuracy"] + 1e-9).all() and (pts["accuracy"] <= pts["seed_max"] + 1e-9).all()


def test_the_fit_says_how_many_more_photos_pay_with_a_band(rising):
    fit, text = rising["fit"], rising["text"]
    assert fit.law in lb.LAWS and len(fit.draws) > lb.BOOTSTRAP * 0.9
    assert min(fit.fitted_on) >= 200 / lb.REGION - 1  # the upper part of the curve only
    now = rising["now"]
    assert fit.accuracy(2 * now) > fit.accuracy(now)  # still rising past today's size
    low, high = fit.band([now, 4 * now])
    assert (low <= fit.accuracy([now, 4 * now]) + 1e-9).all() and (fit.accuracy([now, 4 * now]) <= high + 1e-9).all()
    assert (high - low)[1] > (high - low)[0]  # the further the extrapolation, the wider the band
    assert rising["extra"] > 0 and rising["extra_band"][0] <= rising["extra"] <= rising["extra_band"][1]
    assert lb.photos_for(fit, 0.80) < lb.photos_for(fit, 0.85) and lb.photos_for(fit, 1.01) is None
    assert text.startswith("About ") and "more photos a class (95% band" in text
    assert f"to about {rising['target']:.1%}" in text and "measured" in text and "200 photos a class" in text
    chart = rising["chart"]
    assert chart["per_class"].max() == pytest.approx(lb.EXTEND * now) and chart["accuracy"].is_monotonic_increasing
    summary = lb.summary(rising)
    assert summary["text"] == text and summary["points"]["per_class"][-1] == 200 and summary["law"] == fit.law


def test_a_flat_curve_says_more_photos_of_this_kind_will_not_pay():
    X, y = _blobs(150, 2, dims=20, shift=0.0)  # nothing to learn: the probe stays at chance
    Xv, yv = _blobs(200, 3, dims=20, shift=0.0)
    out = lb.budget(X, y, Xv, yv, seeds=3)
    assert "flattened" in out["text"] or "does not reach" in out["text"] or "levels off" in out["text"]
    assert out["curve"].points["accuracy"].between(0.35, 0.65).all()


def test_without_validation_photos_the_curve_is_cross_fitted_and_extrapolated_to_the_dataset():
    X, y = _blobs(60, 4)
    out = lb.budget(X, y, now_per_class=1000, fractions=lb.SAMPLE_FRACTIONS, seeds=2)
    assert out["curve"].evaluation == "cross-fitted" and out["curve"].n_eval == 120  # every photo scored
    assert out["curve"].points["per_class"].iloc[-1] == 40  # two folds of three train each probe
    assert out["now"] == 1000 and "fitted" in out["text"] and "1,000 photos a class" in out["text"]
    assert out["band_now"][0] <= out["today"] <= out["band_now"][1]


def test_too_few_photos_a_class_is_refused_with_what_to_do():
    X, y = _blobs(40, 5)
    keep = np.r_[np.arange(40), 40 + np.arange(7)]  # 40 cats, 7 dogs
    with pytest.raises(lb.LabelBudgetError) as err:
        lb.learning_curve(X[keep], y[keep], names=["cats", "dogs"])
    said = str(err.value)
    assert "'dogs' has 7 training photos" in said and f"at least {lb.MIN_PER_CLASS}" in said
    assert "Label more photos" in said
    with pytest.raises(lb.LabelBudgetError, match="at least two classes"):
        lb.check_enough(np.zeros(30, int))


def test_fitted_on_half_the_photos_it_predicts_the_full_data_accuracy_on_blobs():
    X, y = _blobs(200, 0)
    Xv, yv = _blobs(300, 1)
    check = lb.honest_check(X, y, Xv, yv)
    assert max(check["fitted_on"]) <= 100 and check["per_class"] == 200
    assert check["predicted"] == pytest.approx(check["measured"], abs=0.02)
    assert check["band"][0] < check["predicted"] < check["band"][1]


def test_the_advisor_reports_the_budget_from_its_sample(fake_features):  # noqa: F811
    from core.analysis import advisor

    fake_features["shift"] = 1.0  # overlapping classes: a curve that still rises
    advice = advisor.advise(fake_dataset(400), backbone="mobilenet_v2", seed=0)
    budget = advice.label_budget
    assert budget["evaluation"] == "cross-fitted" and budget["now_per_class"] == 400
    assert len(budget["points"]["per_class"]) == len(lb.SAMPLE_FRACTIONS)  # the fitted region only: cheap
    assert any(r == "More labels: " + budget["text"] for r in advice.reasons)
    assert len(fake_features["calls"]) == 1  # no extraction of its own: the sample's features


def test_the_advisor_says_why_a_tiny_sample_has_no_curve(fake_features):  # noqa: F811
    from core.analysis import advisor

    advice = advisor.advise(fake_dataset(12), backbone="mobilenet_v2", seed=0)
    assert "error" in advice.label_budget and "Too few photos a class" in advice.label_budget["error"]
    assert any(r.startswith("More labels: Too few photos a class") for r in advice.reasons)


# ---------------------------------------------------------------- the Dataset page's section

def _page(root):
    from tests.test_app_dataset import open_dataset_page, scan_folder

    return scan_folder(open_dataset_page(), root)


def test_the_dataset_page_draws_the_learning_curve(tmp_path, tiny):
    root = tmp_path / "ds"
    for i, cls in enumerate(["a", "b"]):
        write_images(root / "train" / cls, i, 24, seed=1)
        write_images(root / "validation" / cls, i, 12, seed=2)
    at = _page(root)
    assert "How many more labels pay" in [h.value for h in at.header]
    charts = len(at.get("plotly_chart"))
    at.button(key="tl_budget").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    curve = [c for c in at.get("plotly_chart") if "Probe accuracy by photos a class" in c.proto.spec]
    assert len(at.get("plotly_chart")) == charts + 1 and curve and "today" in curve[0].proto.spec
    said = " ".join(i.value for i in at.info)
    assert "24 photos a class" in said and ("more photos a class" in said or "flattened" in said
                                            or "already right" in said)
    at.run()  # kept for this dataset and backbone: no second measurement
    assert [c for c in at.get("plotly_chart") if "Probe accuracy by photos a class" in c.proto.spec]


def test_the_dataset_page_refuses_too_few_photos_a_class_plainly(image_folder, tiny):
    at = _page(image_folder)  # 12 training photos a class
    at.button(key="tl_budget").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "Too few photos a class" in error and "12 training photos" in error


# ---------------------------------------------------------------- the honest check on real features

@pytest.mark.real
def test_fitted_on_half_the_data_it_predicts_the_full_data_probe_within_2_points(cats_vs_dogs, tmp_path):
    """cats_vs_dogs (1,000 a class; close to ImageNet) and oriented gratings (200 a class; far from it),
    EfficientNet-Lite0 features from the cache: the law fitted on at most half the training photos
    predicts the probe trained on all of them within 2 points of the one measured."""
    from threadpoolctl import threadpool_limits

    from core.data.dataset import scan_folder
    from core.features.dataset import dataset_features
    from tests.gratings import write_gratings

    sets = {"cats_vs_dogs": scan_folder(cats_vs_dogs),
            "gratings": scan_folder(write_gratings(tmp_path / "gratings", 200, val_per_class=250, seed=3))}
    for name, ds in sets.items():
        feats = dataset_features(ds, "efficientnet_lite0")
        train = np.array([s == "train" for s in feats.splits])
        with threadpool_limits(1):
            check = lb.honest_check(feats.X[train], feats.y[train], feats.X[~train], feats.y[~train])
        print(f"{name}: fitted on {check['fitted_on'][0]:.0f}-{check['fitted_on'][-1]:.0f} of "
              f"{check['per_class']:.0f} photos a class ({check['law']}): predicted {check['predicted']:.2%} "
              f"(95% band {check['band'][0]:.2%}-{check['band'][1]:.2%}), measured {check['measured']:.2%}")
        assert max(check["fitted_on"]) <= check["per_class"] / 2
        assert abs(check["predicted"] - check["measured"]) <= 0.02, name


def test_the_chart_marks_today_where_the_curve_is_on_its_log_axis(rising):
    """Plotly places annotations on a log axis in log10 units: "today" must sit at today's photos, or the
    axis stretches to 10^(photos) and squeezes the curve into its first pixels (seen in a screenshot)."""
    from app_pages.advice import budget_figure

    summary = lb.summary(rising)
    fig = budget_figure(summary)
    [today] = [a for a in fig.layout.annotations if a.text == "today"]
    assert today.x == pytest.approx(np.log10(summary["now_per_class"]))
    xs = [x for trace in fig.data for x in trace.x]
    assert max(xs) <= lb.EXTEND * summary["now_per_class"] * 1.001 and fig.layout.xaxis.type == "log"
