"""``python -m core predict``: a run's answers for image files and folders as one CSV.

Columns ``file,class,probability,not_sure,unlike_data``: the top-1 class and its (calibrated)
probability, and the two flags as ``true`` / ``false``. A run made before calibration was measured
has no threshold and no feature statistics: its flags are left empty and its probability is the
network's own. A file that cannot be read gets an empty row and its reason in ``errors``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from core import atomic
from core.data.images import is_image_name
from core.errors import TransferLabError
from core.serve import inference

COLUMNS = ["file", "class", "probability", "not_sure", "unlike_data"]


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files named, and the image files under each folder named (recursively, sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise TransferLabError(f"{path} is neither a file nor a folder.")
    return found


def _flag(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


@dataclass
class Outcome:
    rows: list[dict]
    calibrated: bool
    unlike_checked: bool
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def predict(predictor: inference.Predictor, paths: Sequence[str | os.PathLike], batch_size: int = 16) -> Outcome:
    files = image_files(paths)
    results = inference.classify_many(predictor, [(str(p), p) for p in files], k=1, batch_size=batch_size,
                                      keep_pixels=False)
    rows, errors = [], []
    for r in results:
        if not r.ok:
            errors.append((r.name, r.error))
            rows.append({"file": r.name, "class": "", "probability": "", "not_sure": "", "unlike_data": ""})
            continue
        rows.append({"file": r.name, "class": r.label, "probability": f"{r.confidence:.6f}",
                     "not_sure": _flag(r.not_sure), "unlike_data": _flag(r.unlike_data)})
    trust = predictor.trust
    return Outcome(rows, trust is not None, bool(trust is not None and trust.ood is not None), errors)


def to_csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(rows: Sequence[dict], out: str | os.PathLike) -> None:
    atomic.write_text(Path(out), to_csv(rows))
