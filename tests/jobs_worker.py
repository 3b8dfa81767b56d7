"""The job tests' worker: ``python -m tests.jobs_worker RUN_DIR``.

The app's worker trains (``core.train.fit``); this one does the small stand-in named
by the run's ``config["target"]`` (a name in ``tests.jobs_targets.TARGETS``), or trains
when there is none. The ``store`` fixture makes the queue launch this module, so the
job tests exercise the real queue, claim, heartbeat and verdicts, while the app's own
worker never imports anything a run's files name.
"""

from __future__ import annotations

import sys

from core.runs import store, worker
from tests import jobs_targets

MODULE = "tests.jobs_worker"


def main() -> int:
    store.WORKER_MODULE = MODULE  # the runs this worker starts next are test runs too
    return worker.main(sys.argv[1:], work=jobs_targets.run_target)


if __name__ == "__main__":
    sys.exit(main())
