"""Train the level-4+ models on simulated Metrika days and write the artifacts next to this file.

    python models/train.py [--out DIR]

Seeded and deterministic.  Three disjoint sets of simulated days:
  * train      - fits one HistGradientBoostingClassifier per device class (desktop; mobile = phone+tablet);
  * threshold  - held back to pick each class's probability threshold for TARGET_PRECISION;
  * test       - fresh days (other counters, dates and seed) for the metrics reported in README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import precision_recall_curve, precision_score, recall_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python models/train.py`
    sys.path.insert(0, str(ROOT))

from sandbox.simulator import simulate_day  # noqa: E402
from scorer.features import DEVICE_CLASSES, FEATURES, build_matrix, device_class  # noqa: E402
from scorer.model import ARTIFACT_FILES, THRESHOLDS_FILE  # noqa: E402

TARGET_PRECISION = 0.90
LEVEL = 4  # positives: ground-truth engagement level >= LEVEL
VISITS_PER_DAY = 25_000
TRAIN_DAYS = [
    (c, dt.date(2024, 3, d)) for c, d in ((101, 4), (102, 5), (103, 6), (104, 7), (105, 8), (106, 9))
]
THRESHOLD_DAYS = [(c, dt.date(2024, 4, d)) for c, d in ((201, 10), (202, 11))]
TEST_DAYS = [(c, dt.date(2024, 6, d)) for c, d in ((301, 1), (302, 2), (303, 3), (304, 4))]
TRAIN_SEED, THRESHOLD_SEED, TEST_SEED = 0, 1, 2
PARAMS: dict[str, Any] = {
    # Small on purpose: prediction time grows with trees x leaves, and bigger models gained nothing.
    "max_iter": 40,
    "learning_rate": 0.25,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": 0,
}
VERSION_PREFIX = "level4-slot"


Days = Sequence[tuple[int, dt.date]]


def version() -> str:
    """Names the training recipe: the same recipe always yields the same version."""
    recipe = {
        "features": list(FEATURES),
        "params": PARAMS,
        "target_precision": TARGET_PRECISION,
        "days": [[c, d.isoformat()] for c, d in (*TRAIN_DAYS, *THRESHOLD_DAYS, *TEST_DAYS)],
        "visits_per_day": VISITS_PER_DAY,
        "seeds": [TRAIN_SEED, THRESHOLD_SEED, TEST_SEED],
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return f"{VERSION_PREFIX}-{digest}"


def dataset(
    days: Days, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """Features (visits x FEATURES), target (level >= 4) and device class of all visits of ``days``."""
    frames, targets, classes = [], [], []
    for counter, day in days:
        sim = simulate_day(counter, day, n_visits=VISITS_PER_DAY, seed=seed)
        # Fitted on plain arrays, as scoring predicts on them; the artifact records the column order.
        frames.append(build_matrix(sim.visits, sim.hits).T)
        targets.append(sim.level >= LEVEL)
        classes.append(device_class(sim.visits["ym:s:deviceCategory"]).to_numpy(dtype=object))
    return np.concatenate(frames), np.concatenate(targets), np.concatenate(classes)


def pick_threshold(y: npt.NDArray[np.bool_], proba: npt.NDArray[np.float64], target: float) -> float:
    """The threshold with the highest recall among those reaching ``target`` precision."""
    precision, recall, thresholds = precision_recall_curve(y, proba)
    ok = np.flatnonzero(precision[:-1] >= target)
    if ok.size == 0:
        raise RuntimeError(f"precision {target} is not reachable on the threshold split")
    best = ok[np.argmax(recall[:-1][ok])]
    return float(thresholds[best])


def metrics(
    y: npt.NDArray[np.bool_], proba: npt.NDArray[np.float64], threshold_of: npt.NDArray[np.float64]
) -> dict[str, float]:
    picked = proba >= threshold_of
    return {
        "precision": round(float(precision_score(y, picked, zero_division=0.0)), 4),
        "recall": round(float(recall_score(y, picked, zero_division=0.0)), 4),
        "auc": round(float(roc_auc_score(y, proba)), 4),
        "visits": int(y.size),
        "positives": int(y.sum()),
        "selected": int(picked.sum()),
    }


def train(out_dir: Path) -> dict[str, Any]:
    started = time.monotonic()
    tag = version()
    x_train, y_train, c_train = dataset(TRAIN_DAYS, TRAIN_SEED)
    x_thr, y_thr, c_thr = dataset(THRESHOLD_DAYS, THRESHOLD_SEED)
    x_test, y_test, c_test = dataset(TEST_DAYS, TEST_SEED)

    estimators: dict[str, HistGradientBoostingClassifier] = {}
    thresholds: dict[str, float] = {}
    for name in DEVICE_CLASSES:
        rows = c_train == name
        model = HistGradientBoostingClassifier(**PARAMS)
        model.fit(x_train[rows], y_train[rows])
        estimators[name] = model
        thr_rows = c_thr == name
        proba = model.predict_proba(x_thr[thr_rows])[:, 1]
        thresholds[name] = round(pick_threshold(y_thr[thr_rows], proba, TARGET_PRECISION), 6)

    test_proba = np.zeros(len(x_test))
    test_threshold = np.zeros(len(x_test))
    for name in DEVICE_CLASSES:
        rows = c_test == name
        test_proba[rows] = estimators[name].predict_proba(x_test[rows])[:, 1]
        test_threshold[rows] = thresholds[name]
    report: dict[str, Any] = {}
    for name in DEVICE_CLASSES:
        rows = c_test == name
        report[name] = metrics(y_test[rows], test_proba[rows], test_threshold[rows])
    report["overall"] = metrics(y_test, test_proba, test_threshold)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in DEVICE_CLASSES:
        artifact = {
            "estimator": estimators[name],
            "features": list(FEATURES),
            "version": tag,
            "device_class": name,
            "sklearn_version": sklearn.__version__,
        }
        joblib.dump(artifact, out_dir / ARTIFACT_FILES[name], compress=3)
    meta = {
        "version": tag,
        "thresholds": thresholds,
        "target_precision": TARGET_PRECISION,
        "level": LEVEL,
        "features": list(FEATURES),
        "sklearn_version": sklearn.__version__,
        "params": PARAMS,
        "split": {
            "train": {"days": [[c, d.isoformat()] for c, d in TRAIN_DAYS], "seed": TRAIN_SEED},
            "threshold": {"days": [[c, d.isoformat()] for c, d in THRESHOLD_DAYS], "seed": THRESHOLD_SEED},
            "test": {"days": [[c, d.isoformat()] for c, d in TEST_DAYS], "seed": TEST_SEED},
            "visits_per_day": VISITS_PER_DAY,
        },
        "test_metrics": report,
    }
    (out_dir / THRESHOLDS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    meta["seconds"] = round(time.monotonic() - started, 1)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="artifact directory"
    )
    args = parser.parse_args(argv)
    meta = train(args.out)
    print(f"version {meta['version']}, thresholds {meta['thresholds']}, {meta['seconds']} s")
    for name, row in meta["test_metrics"].items():
        print(f"  {name:8s} " + " ".join(f"{k}={v}" for k, v in row.items()))
    for name in DEVICE_CLASSES:
        path = args.out / ARTIFACT_FILES[name]
        print(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
