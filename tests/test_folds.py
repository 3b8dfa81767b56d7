"""Repeated splits for small data (``core.train.folds``): stratified folds, the default rule, the
aggregation, the CLI's fold runs in the queue, the comparison's rows and a real fold fit reusing
the feature cache."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest

from core.data.dataset import BadFile, Dataset, ImageRecord, scan_folder
from core.errors import ConfigError, DatasetError
from core.runs import compare
from core.train import folds, registry
from core.train.plans import run_name


def synthetic(per_class: dict[str, int], n_val: dict[str, int] | None = None) -> Dataset:
    """A dataset of records only (no files): ``per_class`` photos per class, the first ``n_val`` validation."""
    records = []
    for label, n in per_class.items():
        for i in range(n):
            split = "validation" if i < (n_val or {}).get(label, 0) else "train"
            records.append(ImageRecord(f"/data/{label}/{i:04d}.png", label, split, 10, 10, "RGB", "PNG", 100))
    return Dataset("syn", "/data", sorted(per_class), records, [BadFile("/data/x.txt", "not an image")], "fp0")


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_kfold_validates_every_photo_exactly_once_with_the_classes_balanced(k):
    ds = synthetic({"cat": 23, "dog": 17, "owl": 9}, {"cat": 5, "dog": 5, "owl": 2})
    seen: Counter = Counter()
    sizes = []
    for fold in range(k):
        part = folds.fold_dataset(ds, k, fold, seed=7)
        assert sorted(r.path for r in part.records) == sorted(r.path for r in ds.records)  # nothing lost or added
        val = part.split("validation")
        seen.update(r.path for r in val)
        sizes.append(len(val))
        for label, total in {"cat": 23, "dog": 17, "owl": 9}.items():  # each class dealt evenly
            n = sum(r.label == label for r in val)
            assert total // k <= n <= -(-total // k), (label, fold, n)
        assert part.bad_files == ds.bad_files and part.classes == ds.classes
    assert set(seen) == {r.path for r in ds.records} and set(seen.values()) == {1}
    assert max(sizes) - min(sizes) <= 1
    fingerprints = {folds.fold_dataset(ds, k, f, seed=7).fingerprint for f in range(k)}
    assert len(fingerprints) == k and ds.fingerprint not in fingerprints  # caches of splits never mix


def test_splits_are_stable_for_a_seed_and_change_with_it():
    ds = synthetic({"a": 20, "b": 20})
    one = folds.fold_dataset(ds, 5, 2, seed=1).paths("validation")
    again = folds.fold_dataset(synthetic({"b": 20, "a": 20}), 5, 2, seed=1).paths("validation")  # file order aside
    other = folds.fold_dataset(ds, 5, 2, seed=2).paths("validation")
    assert sorted(one) == sorted(again) and sorted(one) != sorted(other)


def test_repeated_splits_keep_the_fraction_per_class_and_differ():
    ds = synthetic({"a": 30, "b": 10})
    vals = []
    for fold in range(4):
        part = folds.fold_dataset(ds, 4, fold, seed=3, scheme="repeated", val_fraction=0.2)
        counts = part.counts()["validation"]
        assert counts == {"a": 6, "b": 2}
        vals.append(frozenset(part.paths("validation")))
    assert len(set(vals)) == 4


def test_too_few_photos_of_a_class_for_k_folds_is_said():
    small = synthetic({"a": 10, "b": 4})
    with pytest.raises(DatasetError, match="at least 5 photos of each class; b has fewer"):
        folds.fold_dataset(small, 5, 0, seed=0)
    assert "Choose fewer folds" in folds.dataset_problem(small, 5)
    assert folds.dataset_problem(small, 4) == folds.dataset_problem(small, 5, "repeated") == ""


def test_fold_fields_are_checked_by_the_registry():
    registry.make_config("linear_probe", dataset="/d", folds=5, fold=4)
    for bad, words in [(dict(folds=1), "2 to 20 folds"), (dict(folds=3, fold=3), "between 0 and 2"),
                       (dict(folds=21), "2 to 20"), (dict(folds=3, fold_scheme="loo"), "kfold, repeated")]:
        with pytest.raises(ConfigError, match=words):
            registry.make_config("linear_probe", dataset="/d", **bad)


def test_the_default_rule_repeats_small_validation_sets_only():
    assert folds.default_folds(synthetic({"a": 60, "b": 60}, {"a": 12, "b": 12})) == 5
    big = synthetic({"a": 1200, "b": 1200}, {"a": 200, "b": 200})  # 400 validation photos: ±2.9 points at 90%
    assert folds.default_folds(big) == 1 and "one split" in folds.default_reason(big)
    assert folds.default_folds(synthetic({"a": 30, "b": 3}, {"a": 6, "b": 1})) == 3  # the smallest class bounds k
    assert folds.default_folds(synthetic({"a": 30, "b": 1})) == 1
    # the threshold is where the 95% interval at 90% accuracy reaches ±3 points
    assert folds.interval_half_width(folds.SMALL_VALIDATION) < 0.03 < folds.interval_half_width(folds.SMALL_VALIDATION - 1)
    assert "±" in folds.default_reason(synthetic({"a": 60, "b": 60}, {"a": 12, "b": 12}))


def test_spread_is_the_mean_and_sample_standard_deviation():
    s = folds.spread([0.8, 0.9, 1.0, None, float("nan")])
    assert s.mean == pytest.approx(0.9) and s.std == pytest.approx(0.1)  # sqrt(((.1)^2 + 0 + (.1)^2) / 2)
    assert (s.low, s.high, s.n, s.values) == (0.8, 1.0, 3, (0.8, 0.9, 1.0))
    assert math.isnan(folds.spread([0.7]).std) and folds.spread([]).n == 0


def test_group_ids_read_from_disk_are_validated():
    good = folds.new_group_id()
    assert folds.valid_group(good) == good
    for bad in ("../../etc", "folds-x", ["folds-20260101-000000-abcd"], 3, None, good + "\n", "**bold**"):
        assert folds.valid_group(bad) is None


def test_fold_configs_share_one_group_and_record_fold_k_and_seed():
    base = registry.make_config("linear_probe", dataset="/d", seed=11).to_dict()
    made = folds.fold_configs([{**base, "group": "compare-x"}], 4, scheme="repeated", seed=5)
    assert [c["fold"] for c in made] == [0, 1, 2, 3]
    assert {(c["folds"], c["fold_seed"], c["fold_scheme"], c["seed"], c["group"]) for c in made} == {
        (4, 5, "repeated", 11, "compare-x")}
    assert len({c[folds.FOLD_GROUP_KEY] for c in made}) == 1
    assert run_name(made[2]).endswith("fold 3/4")
    assert folds.fold_configs([base], 1) == [base]
    with pytest.raises(ConfigError):
        folds.fold_configs([base], 40)


def test_cli_folds_queues_k_runs_sharing_a_group(tmp_path, monkeypatch, capsys):
    from core.__main__ import main, parser
    from core.runs import jobs
    from core.runs.store import RunStore

    queued = []
    monkeypatch.setattr(jobs, "submit", lambda run, *a, **k: queued.append(run) or run)  # the configs are tested
    assert main(["train", "--dataset", str(tmp_path), "--strategy", "linear_probe", "--folds", "5", "--seed", "9",
                 "--name", "small", "--background"]) == 0
    runs = sorted(RunStore().list(), key=lambda r: r.config["fold"])
    assert len(runs) == 5 and len(queued) == 5 and all(r.status()["state"] == "queued" for r in runs)
    assert [r.config["fold"] for r in runs] == list(range(5))
    assert {(r.config["folds"], r.config["fold_seed"], r.config["fold_scheme"]) for r in runs} == {(5, 9, "kfold")}
    assert len({r.config[folds.FOLD_GROUP_KEY] for r in runs}) == 1
    assert runs[0].name == "small · fold 1/5"
    assert "fold group folds-" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser().parse_args(["train", "--dataset", "d", "--folds", "30"])
    assert parser().parse_args(["train", "--dataset", "d"]).folds == 1  # a script's train stays one run


def test_cli_folds_auto_follows_the_rule(image_folder, monkeypatch):
    from core.__main__ import parser, train_runs

    args = parser().parse_args(["train", "--dataset", str(image_folder), "--strategy", "linear_probe", "--folds", "auto"])
    made = train_runs(args)  # 8 validation photos: far under the rule's 385
    assert len(made) == 5 and {c["folds"] for c in made} == {5}
    assert {c["keep_model"] for c in made} == {False}
    kept = train_runs(parser().parse_args(["train", "--dataset", str(image_folder), "--folds", "2",
                                           "--keep-fold-models"]))
    assert {c["keep_model"] for c in kept} == {True}


def test_folds_keep_no_model_unless_asked():
    base = [registry.make_config("feature_extraction", dataset="/d").to_dict()]
    assert base[0]["keep_model"] is True  # a plain run keeps its model
    assert {c["keep_model"] for c in folds.fold_configs(base, 3)} == {False}
    assert {c["keep_model"] for c in folds.fold_configs(base, 3, keep_models=True)} == {True}


def _finish(run, accuracy: float, seconds: float = 2.0, n: int = 8) -> None:
    run.write_metrics({"val_accuracy": accuracy, "val_images": n, "train_seconds": seconds, "balanced_accuracy": accuracy})
    run.set_status("done")


def test_comparison_rows_give_mean_and_spread_per_strategy(store):
    base = [registry.make_config(s, dataset="/d").to_dict() for s in ("linear_probe", "feature_extraction")]
    made = folds.fold_configs(base, 3)
    runs = [store.create(c, name=run_name(c)) for c in made]
    scores = {"linear_probe": [0.75, 0.875, 1.0], "feature_extraction": [0.5, 0.625]}  # one fold still queued
    for run in runs:
        figures = scores[run.config["strategy"]]
        if run.config["fold"] < len(figures):
            _finish(run, figures[run.config["fold"]])
    plain = store.create(registry.make_config("linear_probe", dataset="/d").to_dict())
    _finish(plain, 0.6)
    forged = store.create({**made[0], folds.FOLD_GROUP_KEY: "../../elsewhere"})  # a group id is data
    _finish(forged, 0.1)

    table = compare.comparison_table(store.list())
    rows = table.set_index("run_id")
    assert pd.isna(rows.loc[plain.id, "fold"]) and pd.isna(rows.loc[plain.id, folds.FOLD_GROUP_KEY])
    assert pd.isna(rows.loc[forged.id, folds.FOLD_GROUP_KEY]) and pd.isna(rows.loc[forged.id, "fold"])
    summary = compare.fold_summary(table)
    assert list(summary["strategy"]) == ["linear_probe", "feature_extraction"]  # best mean first
    probe, head = summary.iloc[0], summary.iloc[1]
    assert (probe["folds"], probe["folds_done"]) == (3, 3) and (head["folds"], head["folds_done"]) == (3, 2)
    assert probe["val_accuracy_mean"] == pytest.approx(0.875) and probe["val_accuracy_std"] == pytest.approx(0.125)
    assert probe["per_fold"] == [0.75, 0.875, 1.0] and probe["val_images"] == 24
    assert (probe["val_accuracy_low"], probe["val_accuracy_high"]) == (0.75, 1.0)
    assert head["val_accuracy_mean"] == pytest.approx(0.5625)
    assert folds.describe(probe) == "87.5% ± 12.5 points (sd) over 3 folds (75.0%–100.0%)"
    assert folds.describe(head).endswith("2 of 3 done")
    assert len(probe["run_ids"]) == 3 and forged.id not in probe["run_ids"]


def test_runs_lists_folds_and_their_mean(store, capsys):
    from core.__main__ import main

    made = folds.fold_configs([registry.make_config("linear_probe", dataset="/d").to_dict()], 2)
    runs = [store.create(c, name=run_name(c)) for c in made]
    for run, acc in zip(runs, (0.8, 0.9)):
        _finish(run, acc)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "fold=1/2" in out and "fold=2/2" in out
    assert "Linear probe · efficientnet_lite0: 85.0% ± 7.1 points (sd) over 2 folds" in out
    assert main(["show", runs[1].id]) == 0
    shown = capsys.readouterr().out
    assert f"fold:      2/2 of group {made[0][folds.FOLD_GROUP_KEY]}" in shown and "85.0% ±" in shown


def test_fold_runs_reuse_the_feature_cache_across_folds(image_folder, tiny):
    """A real linear probe on the tiny backbone over 3 folds: the network runs on each photo once (fold 0);
    folds 1 and 2 copy every row from the cache, and every photo is scored once."""
    from core.features.cache import extract_features
    from core.train.fit import fit
    from core.train.loop import load_dataset

    made = folds.fold_configs([registry.make_config("linear_probe", dataset=str(image_folder), backbone=tiny).to_dict()], 3)
    scored = []
    for cfg_dict in made:
        from core.train.strategies import StrategyConfig

        cfg = StrategyConfig.from_dict(cfg_dict)
        result = fit(cfg)
        scored += list(result.predictions["path"])
        ds = load_dataset(cfg)
        reused = [extract_features(ds, tiny, split=s).meta["reused"] for s in ("train", "validation")]
        if cfg.fold:
            assert reused == [len(ds.split("train")), len(ds.split("validation"))], reused  # no forward pass
        assert 0 <= result.metrics["val_accuracy"] <= 1
    assert sorted(scored) == sorted(r.path for r in scan_folder(image_folder).records)


def test_the_page_defaults_to_folds_on_small_data_and_shows_mean_and_spread(store, image_folder, monkeypatch):
    """Strategies page: 8 validation photos, so "Repeat over k splits" starts at 5; "compare all" queues
    5 runs per strategy under one fold group; finished folds show as mean ± spread with every fold's figure."""
    from streamlit.testing.v1 import AppTest

    from core.runs import jobs
    from tests.helpers import REPO, texts

    monkeypatch.setattr(jobs, "pump", lambda *a, **kw: [])  # queue only
    ds = scan_folder(image_folder)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.session_state["tl_dataset"] = ds
    at.run()
    at.switch_page("app_pages/strategies.py").run()
    assert not at.exception, [e.value for e in at.exception]
    [box] = [n for n in at.number_input if n.label == "Repeat over k splits"]
    assert box.value == 5 and "repeat over 5 splits by default" in texts(at.caption)
    at.button(key="tl_strat_all").click().run()
    n = len(registry.STRATEGIES)
    assert f"Queued all {n} strategies over 5 splits: {5 * n} runs" in texts(at.success)
    runs = store.list()
    assert len({r.config[folds.FOLD_GROUP_KEY] for r in runs}) == 1 and len({r.config["group"] for r in runs}) == 1
    for strategy in registry.STRATEGIES:
        assert sorted(r.config["fold"] for r in runs if r.config["strategy"] == strategy) == [0, 1, 2, 3, 4]
    for run in runs:
        if run.config["strategy"] == "linear_probe":
            _finish(run, 0.5 + 0.1 * run.config["fold"])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [frame] = [d.value for d in at.dataframe if "per_fold_text" in d.value.columns]
    row = frame[frame["strategy"] == "linear_probe"].iloc[0]
    assert row["done"] == "5/5" and row["accuracy"].startswith("70.0% ± 15.8 points (sd) over 5 folds")
    assert row["per_fold_text"] == "50.0%, 60.0%, 70.0%, 80.0%, 90.0%"
    assert frame[frame["strategy"] == "scratch"].iloc[0]["done"] == "0/5"
    assert "Repeated over k splits" in [h.value for h in at.subheader]

    [box] = [n for n in at.number_input if n.label == "Repeat over k splits"]
    box.set_value(20).run()  # 16 photos a class: 20 folds cannot hold every class
    at.button(key="tl_strat_train").click().run()
    assert "20-fold splits need at least 20 photos of each class" in texts(at.error)
    assert len(store.list()) == len(runs)
