"""The strategy registry is the one place a strategy is declared: every consumer reads it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.train import methods, registry
from core.train.strategies import StrategyConfig

REPO = Path(__file__).resolve().parents[1]


def test_every_entry_is_complete_and_its_options_are_config_fields():
    fields = set(StrategyConfig.__dataclass_fields__)
    for name, entry in registry.STRATEGIES.items():
        assert entry.name == name and entry.label and entry.summary
        assert entry.inputs in ("features", "pixels")
        assert callable(entry.fit) and entry.fit.__module__ == methods.__name__
        assert set(entry.modern) <= fields and set(entry.classic) <= fields
        assert {o.field for o in entry.options} <= fields, name
        assert entry.pretrained or entry.network, f"{name}: a strategy without a backbone names its network"


def test_every_option_default_fits_its_widget_in_both_presets():
    """A default outside an option's bounds makes its widget fail to draw on the Strategies page."""
    for name, entry in registry.STRATEGIES.items():
        for preset in registry.PRESETS:
            cfg = registry.make_config(name, preset)
            for option in entry.options:
                value = getattr(cfg, option.field)
                if option.kind in ("int", "float"):
                    assert option.lo <= value <= option.hi, (name, preset, option.field, value)


def test_classic_preset_keeps_the_strategy_and_its_textbook_adaptation():
    ft = registry.make_config("fine_tune", "classic", dataset="/d")
    assert (ft.strategy, ft.backbone, ft.input_size, ft.optimizer) == ("fine_tune", "vgg16", 150, "rmsprop")
    assert (ft.fine_tune_layers, ft.fine_tune_epochs) == (4, 10)
    scratch = registry.make_config("scratch", "classic")
    assert scratch.scratch_filters == (32, 64, 128, 128) and scratch.head_units == 512


def test_checks_name_the_strategy_and_every_problem():
    with pytest.raises(ConfigError, match=r"Fine-tuning: .*learning rates must be positive.*at least one layer"):
        registry.make_config("fine_tune", fine_tune_lr=0, fine_tune_layers=0)
    with pytest.raises(ConfigError, match="From scratch: .*convolution block"):
        registry.make_config("scratch", scratch_filters=())
    with pytest.raises(ConfigError, match="Unknown preset 'retro'"):
        registry.make_config("scratch", "retro")


def test_cli_classic_with_a_strategy_records_that_strategy(tmp_path, monkeypatch, capsys):
    """``train --classic --strategy fine_tune`` once silently trained feature extraction."""
    from core.__main__ import main
    from core.runs import jobs
    from core.runs.store import RunStore

    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jobs, "submit", lambda run, *a, **k: run)  # queue only: the config is what is tested
    assert main(["train", "--dataset", str(tmp_path), "--classic", "--strategy", "fine_tune", "--background"]) == 0
    (run,) = RunStore().list()
    assert run.config["strategy"] == "fine_tune"
    assert run.config["backbone"] == "vgg16" and run.config["fine_tune_layers"] == 4
    assert run.config["learning_rate"] == pytest.approx(2e-5)


def test_cli_refuses_an_invalid_config_with_the_reason(tmp_path, monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path / "home"))
    assert main(["train", "--dataset", str(tmp_path), "--strategy", "scratch", "--epochs", "0"]) == 1
    assert "From scratch: epochs must be at least 1." in capsys.readouterr().err


def test_no_strategy_name_is_branched_on_outside_the_registry():
    """Pages, the command line and the training loop read entries; only the registry,
    the advisor's 2x2 cells, the fit functions and the fine-tuning depth sweep may name a strategy."""
    names = set(registry.STRATEGIES)
    allowed = {"core/train/registry.py", "core/analysis/advisor.py", "core/train/methods.py", "core/runs/sweep.py"}
    offenders = []
    for path in [*REPO.glob("core/**/*.py"), *REPO.glob("app_pages/*.py"), REPO / "streamlit_app.py"]:
        rel = path.relative_to(REPO).as_posix()
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            sides = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            if any(isinstance(c, ast.Constant) and c.value in names for c in sides) and any(
                    "strategy" in ast.unparse(c) for c in sides):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders


def test_class_weights_default_follows_the_imbalance_ratio():
    """None (the default) is decided from the training counts: on from IMBALANCE_RATIO (3:1) up, off below;
    a choice made by hand stays; the note names the imbalance and what accuracy alone would hide."""
    from core.train import registry

    cfg = registry.make_config("linear_probe")
    assert cfg.class_weights is None and registry.IMBALANCE_RATIO == 3.0
    on, record = registry.class_weights_default(cfg, {"cats": 500, "dogs": 50})
    assert on.class_weights is True and record["imbalance_ratio"] == 10.0 and "on by default" in record["class_weights_reason"]
    off, record = registry.class_weights_default(cfg, {"cats": 290, "dogs": 100})
    assert off.class_weights is False and "off by default" in record["class_weights_reason"]
    kept, record = registry.class_weights_default(registry.make_config("linear_probe", class_weights=False),
                                                  {"cats": 500, "dogs": 50})
    assert kept.class_weights is False and "as chosen" in record["class_weights_reason"]
    note = registry.imbalance_note({"cats": 500, "dogs": 50})
    assert "10.0:1" in note and "91%" in note and "balanced accuracy" in note
    assert "within 3:1" in registry.imbalance_note({"a": 10, "b": 9})
