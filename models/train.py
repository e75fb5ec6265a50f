"""Train the level-4+ models on two families of simulated Metrika days and write the artifacts here.

    python models/train.py [--out DIR]

Seeded and deterministic.  Each day comes from one member of a simulator family, a generator whose
knobs (engagement and device mix, hit losses, pause shapes and scales, ...) are drawn per member:
family A is ``sandbox.simulator``, family B the structurally different ``sandbox.renewal``.  Members
play three disjoint roles:
  * train      - fit one HistGradientBoostingClassifier per device class (desktop; mobile = phone+tablet);
  * threshold  - choose each class's threshold: the lowest one at which the precision on EVERY
                 threshold member is at least TARGET_PRECISION (the worst case, not the average);
  * test       - members never used above: the per-member metrics of the transfer table.
The transfer table trains on A alone, on B alone and on both (the shipped models), and tests each on
the test members of both families.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python models/train.py`
    sys.path.insert(0, str(ROOT))

from sandbox import renewal, simulator  # noqa: E402
from sandbox.simulator import Day  # noqa: E402
from scorer.calibration import choose_threshold, precision_recall  # noqa: E402
from scorer.features import DEVICE_CLASSES, FEATURES, MOBILE, build_matrix  # noqa: E402
from scorer.model import ARTIFACT_FILES, THRESHOLDS_FILE  # noqa: E402

TARGET_PRECISION = 0.80  # worst case over the threshold members, per device class
LEVEL = 4  # positives: ground-truth engagement level >= LEVEL
VISITS_PER_DAY = 15_000
TRAIN_MEMBERS = tuple(range(1, 13))
THRESHOLD_MEMBERS = tuple(range(101, 109))
TEST_MEMBERS = tuple(range(201, 207))
SHIPPED = "A+B"
TRAINED_ON: dict[str, tuple[str, ...]] = {"A": ("A",), "B": ("B",), SHIPPED: ("A", "B")}
PARAMS: dict[str, Any] = {
    # Small on purpose: scoring cost grows with trees x leaves, and bigger models gained nothing.
    # At most 15 leaves (14 splits) a tree, so scorer.scoring evaluates each as a leaf table.
    "max_iter": 40,
    "learning_rate": 0.25,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": 0,
}
VERSION_PREFIX = "level4-family"
_MOBILE = FEATURES.index("is_mobile")


@dataclass(frozen=True)
class Family:
    member: Callable[[int], Any]  # k -> the member's parameters
    simulate: Callable[..., Day]  # (counter, day, n_visits=, seed=, params=) -> Day


FAMILIES: dict[str, Family] = {
    "A": Family(simulator.member, simulator.simulate_day),
    "B": Family(renewal.member, renewal.simulate_day),
}


def member_day(family: str, k: int, visits: int = VISITS_PER_DAY) -> Day:
    """The day member ``k`` of ``family`` contributes (its own counter, date and seed)."""
    spec = FAMILIES[family]
    counter, day = 7_000_000 + k, dt.date(2024, 1, 1) + dt.timedelta(days=k)
    return spec.simulate(counter, day, n_visits=visits, seed=k, params=spec.member(k))


@dataclass(frozen=True)
class Member:
    family: str
    k: int
    x: npt.NDArray[np.float64]  # visits x FEATURES
    y: npt.NDArray[np.bool_]  # level >= LEVEL
    mobile: npt.NDArray[np.bool_]

    @property
    def name(self) -> str:
        return f"{self.family}{self.k}"


def load(family: str, members: Sequence[int]) -> list[Member]:
    out = []
    for k in members:
        sim = member_day(family, k)
        # Fitted on plain arrays, as scoring predicts on them; the artifact records the column order.
        x = build_matrix(sim.visits, sim.hits).T
        out.append(Member(family, k, x, sim.level >= LEVEL, x[:, _MOBILE] == 1.0))
    return out


def version() -> str:
    """Names the training recipe: the same recipe (down to every member's drawn knobs) gives the same
    version.  It does not hash the simulators' or the features' code: retrain after changing either."""
    recipe = {
        "features": list(FEATURES),
        "params": PARAMS,
        "target_precision": TARGET_PRECISION,
        "level": LEVEL,
        "visits_per_day": VISITS_PER_DAY,
        "members": {"train": TRAIN_MEMBERS, "threshold": THRESHOLD_MEMBERS, "test": TEST_MEMBERS},
        "knobs": {
            f: [repr(s.member(k)) for k in (*TRAIN_MEMBERS, *THRESHOLD_MEMBERS)] for f, s in FAMILIES.items()
        },
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return f"{VERSION_PREFIX}-{digest}"


Estimators = dict[str, HistGradientBoostingClassifier]


def _rows(member: Member, name: str) -> npt.NDArray[np.bool_]:
    return member.mobile if name == MOBILE else ~member.mobile


def fit(members: Sequence[Member]) -> Estimators:
    estimators = {}
    for name in DEVICE_CLASSES:
        x = np.concatenate([m.x[_rows(m, name)] for m in members])
        y = np.concatenate([m.y[_rows(m, name)] for m in members])
        estimators[name] = HistGradientBoostingClassifier(**PARAMS).fit(x, y)
    return estimators


def scores(estimators: Estimators, member: Member) -> npt.NDArray[np.float64]:
    out = np.zeros(member.y.size)
    for name in DEVICE_CLASSES:
        rows = _rows(member, name)
        if rows.any():
            out[rows] = estimators[name].predict_proba(member.x[rows])[:, 1]
    return out


def thresholds(estimators: Estimators, members: Sequence[Member]) -> dict[str, float]:
    """Each class's lowest threshold with precision >= TARGET_PRECISION on every one of ``members``."""
    chosen = {}
    for name in DEVICE_CLASSES:
        groups = []
        for m in members:
            rows = _rows(m, name)
            groups.append((m.y[rows], scores(estimators, m)[rows]))
        threshold = choose_threshold(groups, TARGET_PRECISION)
        if threshold is None:
            raise RuntimeError(f"{name}: precision {TARGET_PRECISION} is not reachable on every member")
        chosen[name] = threshold
    return chosen


def metrics(estimators: Estimators, cut: dict[str, float], member: Member) -> dict[str, Any]:
    score = scores(estimators, member)
    threshold = np.where(member.mobile, cut[MOBILE], cut[DEVICE_CLASSES[0]])
    picked = score >= threshold
    y = member.y
    true_pos = int(np.count_nonzero(picked & y))
    out: dict[str, Any] = {
        "member": member.name,
        "visits": int(y.size),
        "positives": int(y.sum()),
        "mobile_share": round(float(member.mobile.mean()), 3),
        "precision": round(true_pos / max(1, int(picked.sum())), 4),
        "recall": round(true_pos / max(1, int(y.sum())), 4),
        "auc": round(float(roc_auc_score(y, score)), 4),
    }
    for name in DEVICE_CLASSES:
        rows = _rows(member, name)
        p, r = precision_recall(y[rows], score[rows], cut[name])
        out[name] = {"precision": round(p, 4), "recall": round(r, 4)}
    return out


def train(out_dir: Path) -> dict[str, Any]:
    started = time.monotonic()
    tag = version()
    data = {
        family: {
            "train": load(family, TRAIN_MEMBERS),
            "threshold": load(family, THRESHOLD_MEMBERS),
            "test": load(family, TEST_MEMBERS),
        }
        for family in FAMILIES
    }
    tests = [m for family in FAMILIES for m in data[family]["test"]]
    transfer: dict[str, Any] = {}
    shipped: tuple[Estimators, dict[str, float]] | None = None
    for label, families in TRAINED_ON.items():
        estimators = fit([m for f in families for m in data[f]["train"]])
        cut = thresholds(estimators, [m for f in families for m in data[f]["threshold"]])
        transfer[label] = {"thresholds": cut, "test": [metrics(estimators, cut, m) for m in tests]}
        if label == SHIPPED:
            shipped = (estimators, cut)
    assert shipped is not None
    estimators, cut = shipped

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
        "thresholds": cut,
        "target_precision": TARGET_PRECISION,
        "threshold_rule": "lowest threshold with precision >= target_precision on every threshold member",
        "level": LEVEL,
        "features": list(FEATURES),
        "sklearn_version": sklearn.__version__,
        "params": PARAMS,
        "trained_on": list(TRAINED_ON[SHIPPED]),
        "members": {
            "families": {"A": "sandbox.simulator", "B": "sandbox.renewal"},
            "train": list(TRAIN_MEMBERS),
            "threshold": list(THRESHOLD_MEMBERS),
            "test": list(TEST_MEMBERS),
            "visits_per_day": VISITS_PER_DAY,
        },
        "test_metrics": transfer[SHIPPED]["test"],
        "transfer": transfer,
    }
    (out_dir / THRESHOLDS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    meta["seconds"] = round(time.monotonic() - started, 1)
    return meta


def transfer_table(meta: dict[str, Any]) -> str:
    """The transfer table of models/README.md: one row per test member, one column group per training set."""
    labels = list(meta["transfer"])
    head = "| test member | visits | level 4+ | mobile | " + " | ".join(
        f"{label}: P / R / AUC" for label in labels
    )
    lines = [head + " |", "|---|---:|---:|---:|" + "---:|" * len(labels)]
    rows = zip(*(meta["transfer"][label]["test"] for label in labels), strict=True)
    for row in rows:
        first = row[0]
        cells = [
            first["member"],
            f"{first['visits']:,}",
            f"{first['positives'] / first['visits']:.1%}",
            f"{first['mobile_share']:.0%}",
        ]
        cells += [f"{r['precision']:.3f} / {r['recall']:.3f} / {r['auc']:.3f}" for r in row]
        lines.append("| " + " | ".join(cells) + " |")
    worst = ["**worst**", "", "", ""]
    for label in labels:
        test = meta["transfer"][label]["test"]
        low = (min(r["precision"] for r in test), min(r["recall"] for r in test), min(r["auc"] for r in test))
        worst.append("**{:.3f} / {:.3f} / {:.3f}**".format(*low))
    lines.append("| " + " | ".join(worst) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="artifact directory"
    )
    args = parser.parse_args(argv)
    meta = train(args.out)
    print(f"version {meta['version']}, {meta['seconds']} s")
    for label, result in meta["transfer"].items():
        cut = ", ".join(f"{name} {value:.6f}" for name, value in result["thresholds"].items())
        print(f"  trained on {label}: thresholds {cut}")
    print(transfer_table(meta))
    for name in DEVICE_CLASSES:
        path = args.out / ARTIFACT_FILES[name]
        print(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
