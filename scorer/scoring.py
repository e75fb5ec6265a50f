"""The one scoring path (scorer service and CLI alike): visits + hits -> level-4+ visits with scores."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from scorer import parsing, tsv
from scorer.features import DESKTOP, FEATURES, MOBILE, build_matrix
from scorer.model import Models
from scorer.parsing import parse_datetimes, parse_ids

OUTPUT_COLUMNS: tuple[str, ...] = (
    "visitId",
    "clientId",
    "dateTime",
    "visitDuration",
    "score",
    "model_version",
    "deviceClass",  # the model that scored the visit: desktop or mobile
)
_IS_MOBILE = FEATURES.index("is_mobile")
_ROWS_PER_CHUNK = 1 << 16  # visits scored at a time
_MAX_TESTS = 16  # internal nodes per tree for a 2**16-entry leaf table (uint16 codes)
_BIT = (np.uint16(1) << np.arange(_MAX_TESTS, dtype=np.uint16))[:, None]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
OnStage = Callable[[str], None]
logger = logging.getLogger(__name__)


def _noop(stage: str) -> None:
    pass


class _Forest:
    """A binary HistGradientBoostingClassifier compiled to leaf tables, evaluated column-wise by numpy.

    In each tree, internal node j (in preorder) holds the test ``x[feature] <= threshold`` (true: left
    child); its outcome is bit j of a visit's code, and a table over all codes gives the value of the
    leaf the visit reaches (bits off its path do not matter).  A test reads one contiguous feature row
    of the FEATURES x visits matrix, so a tree costs a few vectorised passes instead of a branchy walk
    per visit.  The raw score adds the baseline and the leaf values tree by tree, in the order
    scikit-learn adds them, and the estimator's own loss turns it into a probability: the very value
    predict_proba returns (``_forest`` checks that before first use).
    """

    def __init__(self, estimator: Any) -> None:
        if estimator.n_trees_per_iteration_ != 1 or estimator._baseline_prediction.shape != (1, 1):
            raise ValueError("not a binary classifier")
        self._estimator = estimator
        self._baseline = float(estimator._baseline_prediction[0, 0])
        self._trees = [self._compile(predictor.nodes) for (predictor,) in estimator._predictors]

    @staticmethod
    def _compile(nodes: Any) -> tuple[I64, F64, F64]:
        if nodes["is_categorical"].any() or np.count_nonzero(nodes["is_leaf"] == 0) > _MAX_TESTS:
            raise ValueError("categorical split or too many splits")

        def table(i: int) -> tuple[F64, list[int], list[float]]:
            if nodes["is_leaf"][i]:
                return np.array([nodes["value"][i]], dtype=np.float64), [], []
            left, left_features, left_thresholds = table(int(nodes["left"][i]))
            right, right_features, right_thresholds = table(int(nodes["right"][i]))
            k = len(left_features)
            code = np.arange(1 << (1 + k + len(right_features)))
            leaf = np.where(code & 1 == 1, left[(code >> 1) & ((1 << k) - 1)], right[code >> (1 + k)])
            features = [int(nodes["feature_idx"][i]), *left_features, *right_features]
            return leaf, features, [float(nodes["num_threshold"][i]), *left_thresholds, *right_thresholds]

        leaf, features, thresholds = table(0)
        return np.array(features, dtype=np.int64), np.array(thresholds, dtype=np.float64), leaf

    def probe(self, visits: int = 512) -> F64:
        """Synthetic visits (FEATURES x visits) whose features sit on the split thresholds, just
        below or just above them, or at 0 (a few random combinations, the same every time)."""
        values: list[list[float]] = [[0.0] for _ in FEATURES]
        for features, thresholds, _leaf in self._trees:
            for feature, threshold in zip(features.tolist(), thresholds.tolist(), strict=True):
                values[feature] += [
                    np.nextafter(threshold, -np.inf),
                    threshold,
                    np.nextafter(threshold, np.inf),
                ]
        rng = np.random.default_rng(0)
        return np.array([rng.choice(np.array(v), size=visits) for v in values], dtype=np.float64)

    def proba(self, x: F64) -> F64:
        """Level-4+ probability of each column of ``x`` (FEATURES x visits)."""
        if np.isnan(x).any():  # never from build_matrix; scikit-learn routes NaN per node
            return _predict_proba(self._estimator, x)
        m = x.shape[1]
        raw = np.zeros(m)
        raw += self._baseline
        tests = np.empty((_MAX_TESTS, m), dtype=np.uint8)
        bits = np.empty((_MAX_TESTS, m), dtype=np.uint16)
        code = np.empty(m, dtype=np.uint16)
        for features, thresholds, leaf in self._trees:
            k = features.size
            for j in range(k):
                np.less_equal(x[features[j]], thresholds[j], out=tests[j].view(np.bool_))
            np.multiply(tests[:k], _BIT[:k], out=bits[:k])
            np.bitwise_or.reduce(bits[:k], axis=0, out=code)
            raw += leaf[code]
        proba: F64 = self._estimator._loss.predict_proba(raw)[:, 1]
        return proba


_FORESTS: weakref.WeakKeyDictionary[Any, _Forest | None] = weakref.WeakKeyDictionary()


def _forest(estimator: Any) -> _Forest | None:
    """``estimator`` compiled (once), or None if _Forest cannot score it exactly as predict_proba does.

    The check: probe visits whose features sit on, just below and just above the split thresholds
    must get the very same probabilities both ways.
    """
    if estimator not in _FORESTS:
        forest = None
        try:
            compiled = _Forest(estimator)
            probe = compiled.probe()
            if np.array_equal(compiled.proba(probe), _predict_proba(estimator, probe)):
                forest = compiled
            else:
                logger.warning("scoring %r with predict_proba: cannot compile it exactly", estimator)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            logger.warning("scoring %r with predict_proba: cannot compile it (%s)", estimator, exc)
        _FORESTS[estimator] = forest
    return _FORESTS[estimator]


def _predict_proba(estimator: Any, x: F64) -> F64:
    proba: F64 = estimator.predict_proba(np.ascontiguousarray(x.T))[:, 1]
    return proba


def predict(matrix: F64, models: Models) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Level-4+ probability of each visit (a column of the FEATURES x visits ``matrix``) and whether
    it clears the threshold of its device class."""
    mobile = matrix[_IS_MOBILE] == 1.0
    scores = np.zeros(matrix.shape[1], dtype=np.float64)
    for name, is_mobile in ((DESKTOP, False), (MOBILE, True)):
        estimator = models.estimator(name)
        forest = _forest(estimator)
        columns = np.flatnonzero(mobile == is_mobile)
        if forest is None:  # predict_proba runs on all cores itself
            for lo in range(0, columns.size, _ROWS_PER_CHUNK):
                chunk = columns[lo : lo + _ROWS_PER_CHUNK]
                scores[chunk] = _predict_proba(estimator, np.take(matrix, chunk, axis=1))
            continue

        def work(lo: int, hi: int, forest: _Forest = forest, columns: I64 = columns) -> None:
            scores[columns[lo:hi]] = forest.proba(np.take(matrix, columns[lo:hi], axis=1))

        parsing.for_chunks(columns.size, _ROWS_PER_CHUNK, work)
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
    mobile = matrix[_IS_MOBILE] == 1.0
    del matrix
    rows = np.flatnonzero(selected)
    starts = parse_datetimes(_text(visits["ym:s:dateTime"], rows), "ym:s:dateTime")
    order = np.lexsort((parse_ids(_text(visits["ym:s:visitID"], rows), "ym:s:visitID"), starts))
    rows = rows[order]
    return pd.DataFrame(
        {
            "visitId": _text(visits["ym:s:visitID"], rows),
            "clientId": _text(visits["ym:s:clientID"], rows),
            "dateTime": _text(visits["ym:s:dateTime"], rows),
            "visitDuration": visits["ym:s:visitDuration"].to_numpy(dtype=np.int64)[rows],
            "score": scores[rows],
            "model_version": pd.Series([models.version] * rows.size, dtype=str),
            "deviceClass": pd.Series(np.where(mobile[rows], MOBILE, DESKTOP), dtype=str),
        },
        columns=list(OUTPUT_COLUMNS),
    )


def _text(column: pd.Series, rows: I64) -> pd.Series:
    """``column`` at ``rows`` as str (a str column's values are taken as they are, not re-checked)."""
    return pd.Series(column.array.take(rows), dtype=str)


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
