"""Gradient-boosted trees compiled to leaf tables: scikit-learn's predict_proba, bit for bit, 7x faster."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer import arrays
from scorer.features import FEATURES

_MAX_TESTS = 16  # internal nodes per tree for a 2**16-entry leaf table (uint16 codes)
_BIT = (np.uint16(1) << np.arange(_MAX_TESTS, dtype=np.uint16))[:, None]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
logger = logging.getLogger(__name__)


class Forest:
    """A binary HistGradientBoostingClassifier compiled to leaf tables, evaluated column-wise by numpy.

    In each tree, internal node j (in preorder) holds the test ``x[feature] <= threshold`` (true: left
    child); its outcome is bit j of a visit's code, and a table over all codes gives the value of the
    leaf the visit reaches (bits off its path do not matter).  A test reads one contiguous feature row
    of the FEATURES x visits matrix, so a tree costs a few vectorised passes instead of a branchy walk
    per visit.  The raw score adds the baseline and the leaf values tree by tree, in the order
    scikit-learn adds them, and the logistic link turns it into a probability: the very value
    predict_proba returns (``compiled`` checks that on probe visits).  scikit-learn's link is scipy's
    ``expit``, ``1 / (1 + exp(-x))`` with libm's exp.  numpy's own SIMD exp is used where it gives the
    same bits on a dense sweep (``numpy_link``); where it does not (numpy's AVX-512 exp differs from
    glibc's in the last bit), Arrow's exp, which is libm's, gives scipy's bits without importing scipy.  The
    tables are plain arrays (``arrays``/``from_arrays``), so a compiled forest can be stored and
    scored with neither scikit-learn nor a pickle.
    """

    def __init__(self, baseline: float, trees: list[tuple[I64, F64, F64]], numpy_link: bool = False) -> None:
        self._baseline = baseline
        self._trees = trees
        self.numpy_link = numpy_link

    @classmethod
    def from_estimator(cls, estimator: Any) -> Forest:
        if estimator.n_trees_per_iteration_ != 1 or estimator._baseline_prediction.shape != (1, 1):
            raise ValueError("not a binary classifier")
        loss = estimator._loss
        if type(loss).__name__ != "HalfBinomialLoss" or type(loss.link).__name__ != "LogitLink":
            raise ValueError(f"not a logistic link: {type(loss).__name__}")
        trees = [cls._compile(predictor.nodes) for (predictor,) in estimator._predictors]
        return cls(float(estimator._baseline_prediction[0, 0]), trees, numpy_link=_numpy_link_is_scipys())

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The forest as a few flat arrays (for np.savez)."""
        return {
            "baseline": np.array([self._baseline]),
            "numpy_link": np.array([self.numpy_link]),
            "tests": np.array([t.size for t, _, _ in self._trees], dtype=np.int64),
            "features": np.concatenate([t for t, _, _ in self._trees]),
            "thresholds": np.concatenate([t for _, t, _ in self._trees]),
            "leaves": np.concatenate([leaf for _, _, leaf in self._trees]),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> Forest:
        tests = arrays["tests"].astype(np.int64)
        if tests.size and (tests.min() < 0 or tests.max() > _MAX_TESTS):
            raise ValueError("tests per tree out of range")
        test_ends = np.cumsum(tests)
        leaf_ends = np.cumsum(np.left_shift(1, tests))
        features = np.split(arrays["features"].astype(np.int64), test_ends[:-1])
        thresholds = np.split(arrays["thresholds"].astype(np.float64), test_ends[:-1])
        leaves = np.split(arrays["leaves"].astype(np.float64), leaf_ends[:-1])
        if int(test_ends[-1]) != arrays["features"].size or int(leaf_ends[-1]) != arrays["leaves"].size:
            raise ValueError("arrays of different forests")
        if any(f.size and (f.min() < 0 or f.max() >= len(FEATURES)) for f in features):
            raise ValueError("feature index out of range")
        trees = list(zip(features, thresholds, leaves, strict=True))
        return cls(float(arrays["baseline"][0]), trees, numpy_link=bool(arrays["numpy_link"][0]))

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
        for tested, thresholds, _leaf in self._trees:
            for feature, threshold in zip(tested.tolist(), thresholds.tolist(), strict=True):
                values[feature] += [
                    np.nextafter(threshold, -np.inf),
                    threshold,
                    np.nextafter(threshold, np.inf),
                ]
        rng = np.random.default_rng(0)
        return np.array([rng.choice(np.array(v), size=visits) for v in values], dtype=np.float64)

    def proba(self, x: F64) -> F64:
        """Level-4+ probability of each column of ``x`` (FEATURES x visits, no NaN: scikit-learn
        routes NaN per node, these tables do not)."""
        m = x.shape[1]
        raw = np.zeros(m)
        raw += self._baseline
        tests = np.empty((_MAX_TESTS, m), dtype=np.uint8)
        bits = np.empty((_MAX_TESTS, m), dtype=np.uint16)
        code = np.empty(m, dtype=np.uint16)
        for tested, thresholds, leaf in self._trees:
            k = tested.size
            for j in range(k):
                np.less_equal(x[tested[j]], thresholds[j], out=tests[j].view(np.bool_))
            np.multiply(tests[:k], _BIT[:k], out=bits[:k])
            np.bitwise_or.reduce(bits[:k], axis=0, out=code)
            raw += leaf[code]
        return _expit(raw, self.numpy_link)


def _expit(raw: F64, numpy_link: bool) -> F64:
    if numpy_link:
        out: F64 = np.negative(raw)
        with np.errstate(over="ignore"):  # exp(750) is inf: a probability of 0, as scipy gives
            np.exp(out, out=out)
        out += 1.0
        np.divide(1.0, out, out=out)
        return out
    import pyarrow.compute as pc  # its exp is libm's, as scipy's expit (scikit-learn's link) uses

    out = np.array(arrays.to_numpy(pc.exp(arrays.from_numpy(np.negative(raw)))))
    out += 1.0
    np.divide(1.0, out, out=out)
    return out


def _numpy_link_is_scipys() -> bool:
    """Whether numpy's 1 / (1 + exp(-x)) gives scipy's expit bit for bit, on 2**21 points over the
    range where the probability is neither 0 nor 1 (and a few beyond)."""
    from scipy.special import expit

    sweep = np.concatenate([np.linspace(-750.0, 750.0, 1 << 21), np.linspace(-1.0, 1.0, 1 << 16)])
    return bool(np.array_equal(_expit(sweep, numpy_link=True), expit(sweep)))


_FORESTS: weakref.WeakKeyDictionary[Any, Forest | None] = weakref.WeakKeyDictionary()


def compiled(estimator: Any) -> Forest | None:
    """``estimator`` compiled (once), or None if Forest cannot score it exactly as predict_proba does.

    The check: probe visits whose features sit on, just below and just above the split thresholds
    must get the very same probabilities both ways.
    """
    if estimator not in _FORESTS:
        forest = None
        try:
            candidate = Forest.from_estimator(estimator)
            probe = candidate.probe()
            if np.array_equal(candidate.proba(probe), predict_proba(estimator, probe)):
                forest = candidate
            else:
                logger.warning("scoring %r with predict_proba: cannot compile it exactly", estimator)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            logger.warning("scoring %r with predict_proba: cannot compile it (%s)", estimator, exc)
        _FORESTS[estimator] = forest
    return _FORESTS[estimator]


def predict_proba(estimator: Any, x: F64) -> F64:
    proba: F64 = estimator.predict_proba(np.ascontiguousarray(x.T))[:, 1]
    return proba
