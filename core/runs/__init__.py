"""Runs: one directory per run in the run store, the local queue and its workers, runs sent to a
Ray cluster, and what the pages and the CLI show of runs (comparison, curves, progress)."""

from core.faces import face

_NAMES = {"RunStore": "store", "run_summary": "progress", "uncertainty_lines": "display",
          "with_uncertainty": "display"}
__all__ = ["cluster", "compare", "curves", "display", "jobs", "models", "progress", "store", "sweep", "worker",
           *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
