"""Sets of run configs the pages queue: a selection of strategies, "compare all", names.

Each config comes from the strategy registry (defaults, checks); this module
only combines them: shared options, per-strategy options, a group id.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from core.errors import ConfigError
from core.train import folds, registry
from core.train.strategies import StrategyConfig

GROUP_KEY = "group"  # config key shared by the runs of one "compare all"


def parse_ints(text: str, what: str = "numbers", minimum: int = 1) -> tuple[int, ...]:
    """``"8, 16 32"`` -> ``(8, 16, 32)``; a ``ConfigError`` saying what is wrong otherwise."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    if not parts:
        raise ConfigError(f"Enter at least one whole number for {what}.")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what.capitalize()} must be whole numbers separated by commas, not '{text}'.") from None
    if any(v < minimum for v in values):
        raise ConfigError(f"{what.capitalize()} must each be at least {minimum}.")
    return values


def build_configs(strategies: Sequence[str], *, preset: str = "modern", common: dict | None = None,
                  per_strategy: dict[str, dict] | None = None) -> list[StrategyConfig]:
    """One config per strategy: the preset's defaults, then ``common`` options, then that
    strategy's own options. Raises ``ConfigError`` naming the problem."""
    if not strategies:
        raise ConfigError("Pick at least one strategy to train.")
    if not (common or {}).get("dataset"):
        raise ConfigError("Choose a dataset first (Dataset page).")
    out = []
    for strategy in strategies:
        overrides = {**(common or {}), **(per_strategy or {}).get(strategy, {})}
        out.append(registry.make_config(strategy, preset, **overrides))
    return out


def new_group_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{np.random.default_rng().integers(16**4):04x}"


def compare_all_configs(*, preset: str = "modern", common: dict | None = None,
                        per_strategy: dict[str, dict] | None = None) -> list[dict]:
    """Every strategy on the same data, split and seed, tagged with one group id.

    Returns config dicts ready for ``RunStore.create``.
    """
    group = new_group_id("compare")
    configs = build_configs(list(registry.STRATEGIES), preset=preset, common=common, per_strategy=per_strategy)
    return [{**cfg.to_dict(), GROUP_KEY: group} for cfg in configs]


def name_runs(configs: list[dict], name: str) -> list[dict]:
    """Give a user's run name to a launch: as it is for one run, "name · Strategy" for several."""
    if name:
        for cfg in configs:
            cfg["name"] = name if len(configs) == 1 else f"{name} · {registry.label(cfg['strategy'])}"
    return configs


def run_name(config: dict) -> str:
    """A readable default name for a new run (a fold run's ends "· fold 2/5")."""
    if config.get("name"):
        return str(config["name"])
    strategy = config.get("strategy", "run")
    fold = folds.fold_label(config)
    tail = f" · fold {fold}" if fold else ""
    if not registry.uses_backbone(strategy):
        return registry.label(strategy) + tail
    return f"{registry.label(strategy)} · {config.get('backbone', '')}{tail}"
