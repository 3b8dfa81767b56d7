"""Reviewing suggested labels before they are added: which photo takes which class.

A photo at or above the confidence threshold takes its suggestion; one below it
is left out, unless the person picked a class for it by hand, and a hand pick
always wins over the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class LabelReview:
    choices: dict[str, str | None] = field(default_factory=dict)  # photo path -> class, or None: left out
    touched: set[str] = field(default_factory=set)  # paths whose class was picked by hand

    def apply_threshold(self, frame: pd.DataFrame, threshold: float) -> dict[str, str | None]:
        """Set every photo not picked by hand from the threshold; returns what changed."""
        changed = {}
        for path, suggestion, confidence in zip(frame["path"], frame["suggestion"], frame["confidence"]):
            if path in self.touched:
                continue
            changed[path] = self.choices[path] = suggestion if confidence >= threshold else None
        return changed

    def pick(self, path: str, cls: str | None) -> None:
        """A hand pick (None: leave the photo out); the threshold no longer moves it."""
        self.touched.add(path)
        self.choices[path] = cls

    def chosen(self, frame: pd.DataFrame) -> dict[str, str]:
        """The photos still suggested that will be added, with their class."""
        shown = set(frame["path"])
        return {p: c for p, c in self.choices.items() if c is not None and p in shown}

    def summary(self, frame: pd.DataFrame, threshold: float) -> str:
        """One sentence: how many photos the threshold takes, and what "Add" will add."""
        chosen = self.chosen(frame)
        above = int((frame["confidence"] >= threshold).sum())
        counts = pd.Series(list(chosen.values()), dtype=object).value_counts()
        by_class = " (" + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")" if chosen else ""
        return (f"**{above}** of {len(frame)} photos are at or above {threshold:.0%} and take their suggested "
                f"label; the other {len(frame) - above} are left out unless you pick a class for them. "
                f"Ready to add: **{len(chosen)}**{by_class}.")

    def added(self, paths) -> None:
        """Forget photos that were added to the dataset."""
        for p in paths:
            self.choices.pop(p, None)
            self.touched.discard(p)
