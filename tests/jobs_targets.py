"""Small real stand-ins for training, for the job tests: ``config["target"] = NAME`` (run by tests/jobs_worker.py).

Each records its start in ``starts.log`` (one line per worker that entered it)
so tests can prove a run was started exactly once.
"""

from __future__ import annotations

import os
import time

from core.runs.store import Run


def _mark_start(run: Run) -> None:
    with open(run.dir / "starts.log", "a") as fh:
        fh.write(f"{os.getpid()}\n")


def _sleep(run: Run, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run.raise_if_cancelled()
        time.sleep(0.02)


def epochs(run: Run) -> None:
    """``config["epochs"]`` history rows, ``config["sleep"]`` s each; stops by raising when cancelled."""
    _mark_start(run)
    total = run.config.get("epochs", 3)
    for epoch in range(total):
        _sleep(run, run.config.get("sleep", 0.0))
        run.append_history({"epoch": epoch, "phase": "head", "loss": 1.0 / (epoch + 1), "accuracy": epoch / total})
        run.write_progress({"epoch": epoch + 1, "epochs": total}, force=True)


def epochs_soft(run: Run) -> None:
    """Like ``epochs`` but on cancel it just returns, leaving the verdict to the worker."""
    _mark_start(run)
    for epoch in range(run.config.get("epochs", 3)):
        end = time.monotonic() + run.config.get("sleep", 0.0)
        while time.monotonic() < end and not run.cancel_requested():
            time.sleep(0.02)
        if run.cancel_requested():
            return
        run.append_history({"epoch": epoch, "loss": 1.0 / (epoch + 1)})


def gate(run: Run) -> None:
    """Wait until the test creates ``go`` in the run folder (or cancels), then finish."""
    _mark_start(run)
    while not (run.dir / "go").exists():
        run.raise_if_cancelled()
        time.sleep(0.02)
    run.append_history({"epoch": 0, "loss": 0.5})


def fail(run: Run) -> None:
    _mark_start(run)
    run.append_history({"epoch": 0, "loss": 2.0})
    raise ValueError("boom: learning rate must be positive")


def forever(run: Run) -> None:
    """Ignore cancel requests; only a kill stops it."""
    _mark_start(run)
    while True:
        time.sleep(0.05)


def record_settings(run: Run) -> None:
    """What the worker process sees of the server's configuration."""
    import json

    from core import layout, settings

    (run.dir / "seen.json").write_text(json.dumps({"home": str(layout.home()), "weights": str(settings.weights_dir()),
                                                   "user": settings.current_user()}))


TARGETS = {f.__name__: f for f in (epochs, epochs_soft, gate, fail, forever, record_settings)}


def run_target(run: Run) -> None:
    """Do the run's ``config["target"]``; a run without one trains for real."""
    from core.errors import RunError
    from core.runs.worker import train_run

    name = run.config.get("target")
    if name is None:
        return train_run(run)
    if name not in TARGETS:
        raise RunError(f"No test target '{name}'.")
    return TARGETS[name](run)
