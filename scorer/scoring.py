"""The one scoring path (scorer service and CLI alike): visits + hits -> level-4+ visits with scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from scorer import tsv
from scorer.features import DESKTOP, FEATURES, MOBILE, build_matrix, parse_datetimes, parse_ids
from scorer.model import Models

OUTPUT_COLUMNS: tuple[str, ...] = (
    "visitId",
    "clientId",
    "dateTime",
    "visitDuration",
    "score",
    "model_version",
)
_IS_MOBILE = FEATURES.index("is_mobile")
_PREDICT_ROWS = 1 << 16  # visits per predict_proba call: small temporaries, recycled by malloc

OnStage = Callable[[str], None]


def _noop(stage: str) -> None:
    pass


def predict(
    matrix: npt.NDArray[np.float64], models: Models
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Level-4+ probability of each visit (a column of the FEATURES x visits ``matrix``) and whether
    it clears the threshold of its device class."""
    mobile = matrix[_IS_MOBILE] == 1.0
    scores = np.zeros(matrix.shape[1], dtype=np.float64)
    for name, rows in ((DESKTOP, np.flatnonzero(~mobile)), (MOBILE, np.flatnonzero(mobile))):
        estimator = models.estimator(name)
        for lo in range(0, rows.size, _PREDICT_ROWS):
            chunk = rows[lo : lo + _PREDICT_ROWS]
            scores[chunk] = estimator.predict_proba(np.ascontiguousarray(matrix[:, chunk].T))[:, 1]
    thresholds = np.where(mobile, models.threshold(MOBILE), models.threshold(DESKTOP))
    return scores, scores >= thresholds


def score_visits(
    visits: pd.DataFrame, hits: pd.DataFrame, models: Models, on_stage: OnStage | None = None
) -> pd.DataFrame:
    """The level-4+ visits, columns OUTPUT_COLUMNS, ordered by dateTime then (numeric) visitId."""
    stage = on_stage or _noop
    stage("features")
    matrix = build_matrix(visits, hits)
    stage("scoring")
    scores, selected = predict(matrix, models)
    del matrix
    rows = np.flatnonzero(selected)
    picked = visits.iloc[rows]
    starts = parse_datetimes(picked["ym:s:dateTime"], "ym:s:dateTime")
    order = np.lexsort((parse_ids(picked["ym:s:visitID"], "ym:s:visitID"), starts))
    picked = picked.iloc[order]
    return pd.DataFrame(
        {
            "visitId": pd.Series(picked["ym:s:visitID"].to_numpy(dtype=object), dtype=str),
            "clientId": pd.Series(picked["ym:s:clientID"].to_numpy(dtype=object), dtype=str),
            "dateTime": pd.Series(picked["ym:s:dateTime"].to_numpy(dtype=object), dtype=str),
            "visitDuration": picked["ym:s:visitDuration"].to_numpy(dtype=np.int64),
            "score": scores[rows][order],
            "model_version": pd.Series([models.version] * rows.size, dtype=str),
        },
        columns=list(OUTPUT_COLUMNS),
    )


def score_dir(
    logs_dir: Path | str, models: Models, on_stage: OnStage | None = None
) -> tuple[pd.DataFrame, int]:
    """Read visits*.tsv and hits*.tsv from ``logs_dir`` and score them: (level-4+ visits, total visits)."""
    visit_paths, hit_paths = tsv.find_parts(logs_dir)
    if not visit_paths:
        raise tsv.TsvError(f"{logs_dir}: no visits*.tsv files")
    if not hit_paths:
        raise tsv.TsvError(f"{logs_dir}: no hits*.tsv files")
    visits = tsv.read_visits(visit_paths)
    hits = tsv.read_hits(hit_paths)
    return score_visits(visits, hits, models, on_stage), len(visits)
