"""Thresholds from labelled visits: the rule ``models/train.py`` uses, and a counter's own calibration.

The shipped thresholds were chosen on simulated days; a real counter's visits rank the same way but
may need another cut.  ``calibrate`` scores a directory of Logs API TSVs, joins a labels file to it by
visitID (exact text), and re-chooses each device class's threshold for a target precision on the
labelled visits.  It writes a complete models directory (the two artifacts, copied, and a new
``level4_thresholds.json`` of the same version), so ``MODELS_DIR`` / ``--models-dir`` can point at it.

A labels file is tab-separated with a header naming at least ``visitID`` and ``level``: the visit's
id as 1-20 decimal digits (matched as text to ``ym:s:visitID``) and its engagement level, an integer
0..5 (level 4+ is what the models pick).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from scorer import model, scoring, tsv
from scorer.features import DEVICE_CLASSES, build_matrix, device_class

LEVEL = 4  # positives: level >= LEVEL
MAX_LEVEL = 5
DEFAULT_TARGET = 0.9
# Fewer labelled visits of a class than this (level 4+, and below 4) leave its threshold as shipped.
MIN_POSITIVES = 30
MIN_NEGATIVES = 30
# A threshold must pick at least this many labelled level-4+ visits: a precision measured on a handful
# says nothing.
MIN_PICKED = 10

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and, where it can, the line."""


class CalibrationError(ValueError):
    """The labelled visits do not allow the asked-for calibration."""


def choose_threshold(
    groups: Sequence[tuple[Bools, F64]], target: float, min_true_positives: int = 1
) -> float | None:
    """The lowest score threshold at which every group's precision is at least ``target``.

    Each group is (is level 4+, score) of its visits; a visit is picked when its score is >= the
    threshold.  Recall only grows as the threshold falls, so the lowest such threshold has the
    highest recall in every group at once.  None if no threshold that picks at least
    ``min_true_positives`` level-4+ visits in every group reaches ``target`` in every group.
    """
    if not groups or any(y.size == 0 for y, _ in groups):
        return None
    candidates = np.unique(np.concatenate([score for _, score in groups]))  # ascending
    worst = np.ones(candidates.size)
    enough = np.ones(candidates.size, dtype=bool)
    for y, score in groups:
        order = np.argsort(-score, kind="stable")
        descending = score[order]
        true_pos = np.cumsum(y[order])
        # visits with score >= each candidate
        picked = np.searchsorted(-descending, -candidates, side="right")
        precision = np.where(picked > 0, true_pos[np.maximum(picked - 1, 0)] / np.maximum(picked, 1), 1.0)
        worst = np.minimum(worst, precision)
        enough &= np.where(picked > 0, true_pos[np.maximum(picked - 1, 0)], 0) >= max(1, min_true_positives)
    ok = np.flatnonzero((worst >= target) & enough)
    return float(candidates[ok[0]]) if ok.size else None


def precision_recall(y: Bools, score: F64, threshold: float) -> tuple[float, float]:
    """Precision and recall of picking ``score >= threshold`` (0 where undefined)."""
    picked = score >= threshold
    true_pos = int(np.count_nonzero(picked & y))
    n_picked, n_pos = int(np.count_nonzero(picked)), int(np.count_nonzero(y))
    return (true_pos / n_picked if n_picked else 0.0), (true_pos / n_pos if n_pos else 0.0)


def best_precision(y: Bools, score: F64) -> tuple[float, float]:
    """The highest precision any threshold reaches, and the recall there (the largest one if tied)."""
    if y.size == 0 or not y.any():
        return 0.0, 0.0
    order = np.argsort(-score, kind="stable")
    descending = score[order]
    true_pos = np.cumsum(y[order])
    # a cut can only fall where the score changes: after the last visit of each distinct score
    ends = np.append(np.flatnonzero(descending[1:] != descending[:-1]), descending.size - 1)
    precision = true_pos[ends] / (ends + 1)
    recall = true_pos[ends] / true_pos[-1]
    best = np.lexsort((recall, precision))[-1]
    return float(precision[best]), float(recall[best])


def read_labels(path: Path | str) -> pd.Series:
    """visitID (str) -> level (int) from a labels TSV; a clear LabelsError for anything unusable."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8"
        )
    except FileNotFoundError as exc:
        raise LabelsError(f"{path}: no such file") from exc
    except pd.errors.EmptyDataError as exc:
        raise LabelsError(f"{path}: empty file; expected a header 'visitID<TAB>level'") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: not a tab-separated UTF-8 file: {exc}") from exc
    for column in ("visitID", "level"):
        if column not in frame.columns:
            header = "\t".join(map(str, frame.columns))
            raise LabelsError(f"{path}: no {column!r} column (the header is {header!r})")
    ids, levels = frame["visitID"], frame["level"]
    if ids.empty:
        raise LabelsError(f"{path}: no labelled visits after the header")
    _check(path, ids, ~ids.str.fullmatch(r"[0-9]{1,20}"), "visitID {!r} is not 1-20 decimal digits")
    _check(path, levels, ~levels.str.fullmatch(r"[+-]?[0-9]{1,18}"), "level {!r} is not an integer")
    numbers = levels.astype(np.int64)
    _check(
        path, levels, (numbers < 0) | (numbers > MAX_LEVEL), f"level {{!r}} is out of range 0..{MAX_LEVEL}"
    )
    labels = pd.Series(numbers.to_numpy(), index=pd.Index(ids, dtype=str), name="level")
    distinct = labels.groupby(level=0).nunique()
    if (distinct > 1).any():
        visit = str(distinct.index[distinct.to_numpy() > 1][0])
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(ids.to_numpy() == visit))
        raise LabelsError(f"{path}: visitID {visit} has different levels (lines {lines})")
    return labels[~labels.index.duplicated()]


def _check(path: Path, values: pd.Series, bad: pd.Series, message: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise LabelsError(f"{path}: line {row + 2}: " + message.format(values.iloc[row]))


def score_logs(logs_dir: Path | str, models: model.Models) -> pd.DataFrame:
    """Every visit of the TSVs in ``logs_dir``: visitID (text), device class and level-4+ score."""
    visit_paths, hit_paths = tsv.find_parts(logs_dir)
    if not visit_paths:
        raise tsv.TsvError(f"{logs_dir}: no visits*.tsv files")
    if not hit_paths:
        raise tsv.TsvError(f"{logs_dir}: no hits*.tsv files")
    visits = tsv.read_visits(visit_paths)
    hits = tsv.read_hits(hit_paths)
    scores, _ = scoring.predict(build_matrix(visits, hits), models)
    return pd.DataFrame(
        {
            "visitID": visits["ym:s:visitID"].astype(str).to_numpy(),
            "device_class": device_class(visits["ym:s:deviceCategory"]).to_numpy(),
            "score": scores,
        }
    )


@dataclass(frozen=True)
class ClassResult:
    device_class: str
    labelled: int  # labelled visits of the class found in the logs
    positives: int  # ... of level 4+
    threshold: float
    previous: float  # the threshold it replaces
    precision: float  # on the labelled visits, at ``threshold``
    recall: float
    source: str  # "labels", or "kept" (too few labelled visits: the previous threshold)


def calibrate(
    logs_dir: Path | str,
    labels_path: Path | str,
    out_dir: Path | str,
    models_dir: Path | str | None = None,
    target: float = DEFAULT_TARGET,
) -> list[ClassResult]:
    """Re-choose the thresholds of ``models_dir`` on the labelled visits and write a models directory."""
    if not 0.0 < target < 1.0:
        raise CalibrationError(f"target precision must be between 0 and 1, got {target}")
    source = Path(models_dir) if models_dir is not None else model.DEFAULT_DIR
    models = model.load_models(source)
    labels = read_labels(labels_path)
    scored = score_logs(logs_dir, models).drop_duplicates("visitID")
    joined = scored.join(labels, on="visitID", how="inner")
    if joined.empty:
        raise LabelsError(
            f"{labels_path}: none of its {len(labels)} visitIDs is among the "
            f"{len(scored)} visits in {logs_dir}"
        )
    results = [_class_result(joined, name, models.threshold(name), target) for name in DEVICE_CLASSES]
    if all(r.source == "kept" for r in results):
        counts = ", ".join(f"{r.device_class} {r.positives} of {r.labelled}" for r in results)
        raise LabelsError(
            f"{labels_path}: too few labelled visits to calibrate (level 4+ of labelled: {counts}); "
            f"a class needs at least {MIN_POSITIVES} of level 4+ and {MIN_NEGATIVES} below"
        )
    _write(source, Path(out_dir), results, target, labels_path, logs_dir)
    return results


def _class_result(joined: pd.DataFrame, name: str, previous: float, target: float) -> ClassResult:
    rows = joined[joined["device_class"] == name]
    y = (rows["level"] >= LEVEL).to_numpy()
    score = rows["score"].to_numpy(dtype=np.float64)
    positives = int(y.sum())
    if positives < MIN_POSITIVES or y.size - positives < MIN_NEGATIVES:
        precision, recall = precision_recall(y, score, previous)
        return ClassResult(name, int(y.size), positives, previous, previous, precision, recall, "kept")
    threshold = choose_threshold([(y, score)], target, MIN_PICKED)
    if threshold is None:
        best, at = best_precision(y, score)
        raise CalibrationError(
            f"{name}: precision {target} is not reachable on its {y.size} labelled visits "
            f"(the best is {best:.3f}, at recall {at:.3f}); ask for a lower --target-precision"
        )
    precision, recall = precision_recall(y, score, threshold)
    return ClassResult(name, int(y.size), positives, threshold, previous, precision, recall, "labels")


def _write(
    source: Path,
    out: Path,
    results: list[ClassResult],
    target: float,
    labels_path: Path | str,
    logs_dir: Path | str,
) -> None:
    meta: dict[str, Any] = json.loads((source / model.THRESHOLDS_FILE).read_text(encoding="utf-8"))
    meta["thresholds"] = {r.device_class: r.threshold for r in results}
    meta["calibration"] = {
        "labels": str(labels_path),
        "logs_dir": str(logs_dir),
        "target_precision": target,
        "level": LEVEL,
        "classes": [asdict(r) for r in results],
    }
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != source.resolve():
        for name in model.ARTIFACT_FILES.values():
            shutil.copyfile(source / name, out / name)
    staged = out / (model.THRESHOLDS_FILE + ".tmp")
    staged.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(staged, out / model.THRESHOLDS_FILE)
    model.load_models(out)  # what was written loads
