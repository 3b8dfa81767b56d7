"""``python -m core.runs.worker RUN_DIR [NEXT_RUN_DIR ...]``: train runs in this process, then start the next.

Started detached by ``core.runs.jobs``. It claims the run, heartbeats from a thread,
trains it with ``train_run`` (``core.train.fit.fit``, which looks the run's strategy up in the
registry: nothing in a run's files names code to import), and records how it ended:
done, cancelled, or failed with the traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from functools import partial
from typing import Any, Callable

from core import settings
from core.errors import RunError, TransferLabError
from core.runs.jobs import pump
from core.runs.store import HEARTBEAT_S, HOST, Run, RunCancelled, RunStore, process_start_time
from core.runs.models import save_model
from core.serve import inference, trust
from core.train.fit import fit
from core.train.loop import load_dataset
from core.train.strategies import StrategyConfig

Work = Callable[[Run], Any]
STOPPED = 128 + signal.SIGTERM  # the exit code of a worker stopped by SIGTERM, as a shell reports it


class _Terminated(BaseException):
    """SIGTERM turned into an exception so the run is marked failed, not left running."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated(f"worker stopped by signal {signal.Signals(signum).name}")


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [worker {os.getpid()}] {message}", flush=True)


class _RunReporter:
    """Sends a fit's progress and history into a run store run."""

    def __init__(self, run):
        self.run = run
        self.phase = None

    def on_progress(self, info: dict) -> None:
        changed = info.get("phase") != self.phase  # never drop the first message of a phase
        self.phase = info.get("phase")
        self.run.write_progress(info, force=changed)

    def on_epoch(self, row: dict) -> None:
        self.run.append_history(row)

    def should_stop(self) -> bool:
        return self.run.cancel_requested()


def train_run(run: Run) -> None:
    """Fit the run's config (its strategy looked up in the registry) and store the predictions, the
    model and the metrics with the post-fit trust records (no model and no trust records for a run
    that keeps none: ``keep_model``)."""
    cfg = StrategyConfig.from_dict(run.config)
    result = fit(cfg, _RunReporter(run), run_dir=run.dir)
    if result.cancelled:
        raise RunCancelled("cancelled by user; history and the best checkpoint are kept")
    run.write_predictions(result.predictions)
    if not cfg.keep_model:  # a fold of a repeated split: measured, not served (core.train.folds.fold_configs)
        run.checkpoint_path.unlink(missing_ok=True)  # a long fit's periodic checkpoint is a model too
        run.write_metrics({**result.metrics, "model_kept": False})
        return
    record = save_model(result.model, run.model_path)
    trusted = _assess(run, cfg, result)
    run.write_metrics({**result.metrics, "model_bytes": record["bytes"], "model_sha256": record["sha256"], **trusted})


def _assess(run: Run, cfg, result) -> dict:
    """The post-fit step: calibration, the "not sure" threshold and the training data's feature
    statistics, from the run's validation predictions and the head's inputs (``core.serve.trust``):
    the fit's cached features where it trained on them, else its saved model run on the photos.
    Returns the figures for the run's metrics; a failure leaves the run uncalibrated, not failed."""
    run.write_progress({"phase": "calibrate", "message": "Calibrating the confidence; features of the training "
                        "photos for the unlike-data check"}, force=True)
    start = time.perf_counter()
    try:
        ds = result.dataset or load_dataset(cfg)
        if result.head_inputs is not None:
            features_of = result.head_inputs_of
        else:
            features_of = partial(inference.outputs_of_files, inference.load_run(run, with_features=True))
        found = trust.assess(run.dir, result.predictions, result.metrics["classes"], ds.paths("train"),
                             ds.labels("train"), features_of, seed=cfg.seed)
    except (TransferLabError, ValueError, OSError, RuntimeError) as exc:
        print(f"calibration skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {}
    cal, abst = found.calibration, found.abstention
    return {"calibration": cal.method, "temperature": cal.temperature, "ece_before": cal.ece_before,
            "ece_after": cal.ece_after, "not_sure_threshold": abst.threshold, "not_sure_coverage": abst.coverage,
            "unlike_data_threshold": found.ood.threshold if found.ood else None,
            "calibration_seconds": time.perf_counter() - start}


def _claim(run: Run) -> bool:
    """Own the run: it was set running with our pid by ``jobs.pump``, or is queued (manual start)."""
    me = os.getpid()
    with run.status_update() as status:
        if status["state"] == "running" and status.get("pid") == me:
            status["heartbeat"] = time.time()
            return True
        actor = (status.get("cluster") or {}).get("actor")
        if status["state"] == "running" and not status.get("pid") and actor and actor == settings.ray_actor():
            now = time.time()  # dispatched to a Ray cluster (core.runs.cluster): our actor started us
            status.update(heartbeat=now, pid=me, pid_start=process_start_time(me), host=HOST)
            return True
        if status["state"] == "queued":
            now = time.time()
            status.update(state="running", started=now, heartbeat=now, pid=me,
                          pid_start=process_start_time(me), host=HOST)
            return True
    return False


def _heartbeat(run: Run, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            run.heartbeat()
        except (OSError, RunError) as err:  # a lost beat is tolerated; the next one retries
            _log(f"heartbeat failed: {err}")


def _reason(err: BaseException) -> str:
    text = str(err) if isinstance(err, (TransferLabError, _Terminated)) else f"{type(err).__name__}: {err}"
    lines = text.strip().splitlines() or [type(err).__name__]
    return lines[0][:300]


def _execute(run: Run, work: Work) -> int:
    """Do a claimed run's work and record the outcome; returns an exit code."""
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(run, stop), name="heartbeat", daemon=True)
    beat.start()
    code = 0
    try:
        work(run)
    except RunCancelled as err:
        run.transition("running", "cancelled", reason=str(err))
    except BaseException as err:  # noqa: BLE001 - every way out must be recorded
        trace = traceback.format_exc()
        # bad input (a TransferLabError) is the user's to fix: its reason, not a traceback
        _log(f"failed: {_reason(err)}" if isinstance(err, TransferLabError) else f"failed:\n{trace}")
        run.transition("running", "failed", error=trace, reason=_reason(err))
        code = STOPPED if isinstance(err, _Terminated) else 1
    else:
        if run.cancel_requested():
            run.transition("running", "cancelled", reason="cancelled by user")
        else:
            run.transition("running", "done")
    finally:
        stop.set()
    _log(f"run {run.id} ended {run.status()['state']}")
    return code


def main(argv: list[str] | None = None, work: Work = train_run) -> int:
    """Claim and do the run in ``argv``, then each further run it names that is still queued (the
    next folds of a repeated split, in one process: ``core.runs.jobs``); ``work`` is what training
    means (the job tests pass small stand-ins through their own worker module, ``tests/jobs_worker.py``).
    Returns the first run's exit code: 3 when it was not ours to start."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m core.runs.worker RUN_DIR [NEXT_RUN_DIR ...]", file=sys.stderr)
        return 2
    try:
        runs = [Run(folder) for folder in argv]
    except RunError as err:
        print(err, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    codes = []
    for n, run in enumerate(runs):
        if not _claim(run):
            _log(f"run {run.id} is {run.status()['state']} (pid {run.status().get('pid')}); not starting it")
            codes.append(3)
            continue
        _log(f"run {run.id} started" + (f" ({n + 1} of {len(runs)} in this worker)" if len(runs) > 1 else ""))
        codes.append(_execute(run, work))
        if codes[-1] == STOPPED:
            break  # stopped from outside: the runs after this one stay queued for the next worker
    if not settings.ray_actor():  # on a Ray cluster, the run's actor starts the next run
        pump(RunStore.holding(runs[0]))
    return codes[0]


if __name__ == "__main__":
    sys.exit(main())
