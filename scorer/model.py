"""Load the level-4+ model artifacts: one classifier per device class plus their thresholds.

An artifact is only accepted if it was trained on exactly ``features.FEATURES`` (same names, same
order) with the scikit-learn release this process runs; anything else is refused with
``ModelMismatch`` rather than silently scoring garbage.  Artifacts are pickles: load only the ones
shipped in the repository (or built by ``models/train.py``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.exceptions import InconsistentVersionWarning

from scorer.features import DEVICE_CLASSES, FEATURES

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models"
ARTIFACT_FILES: dict[str, str] = {
    "desktop": "level4_desktop_slot.joblib",
    "mobile": "level4_mobile_slot.joblib",
}
THRESHOLDS_FILE = "level4_thresholds.json"
_ARTIFACT_KEYS = frozenset({"estimator", "features", "version", "device_class"})


class ModelMismatch(Exception):
    """A model artifact that is missing, malformed, or does not match this code's features."""


class Estimator(Protocol):
    def predict_proba(self, x: Any) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class ClassModel:
    device_class: str
    estimator: Estimator
    threshold: float
    version: str


@dataclass(frozen=True)
class Models:
    version: str
    by_class: Mapping[str, ClassModel]

    def estimator(self, device_class: str) -> Estimator:
        return self.by_class[device_class].estimator

    def threshold(self, device_class: str) -> float:
        return self.by_class[device_class].threshold


def _load_artifact(path: Path, device_class: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelMismatch(f"{path}: model artifact not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            artifact = joblib.load(path)
    except InconsistentVersionWarning as exc:
        raise ModelMismatch(f"{path}: {exc}") from exc
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise ModelMismatch(f"{path}: cannot load: {exc!r}") from exc
    if not isinstance(artifact, dict) or not {"estimator", "features", "version", "device_class"} <= set(
        artifact
    ):
        raise ModelMismatch(f"{path}: not a model artifact (expected a dict with estimator/features/version)")
    features = list(artifact["features"])
    if features != list(FEATURES):
        raise ModelMismatch(
            f"{path}: trained on features {features}, but this code computes {list(FEATURES)}; retrain"
        )
    if artifact["device_class"] != device_class:
        raise ModelMismatch(
            f"{path}: artifact is for {artifact['device_class']!r}, expected {device_class!r}"
        )
    estimator = artifact["estimator"]
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ModelMismatch(f"{path}: estimator has no predict_proba")
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and list(names) != list(FEATURES):
        raise ModelMismatch(f"{path}: estimator was fitted on columns {list(names)}")
    if getattr(estimator, "n_features_in_", len(FEATURES)) != len(FEATURES):
        raise ModelMismatch(f"{path}: estimator expects {estimator.n_features_in_} features")
    return artifact


def _load_thresholds(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelMismatch(f"{path}: thresholds file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelMismatch(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("thresholds"), dict):
        raise ModelMismatch(f"{path}: expected an object with 'thresholds'")
    return data


def load_models(directory: Path | str | None = None) -> Models:
    """Load and check both device-class models and thresholds from ``directory`` (default: models/)."""
    root = Path(directory) if directory is not None else DEFAULT_DIR
    meta = _load_thresholds(root / THRESHOLDS_FILE)
    by_class: dict[str, ClassModel] = {}
    for device_class in DEVICE_CLASSES:
        artifact = _load_artifact(root / ARTIFACT_FILES[device_class], device_class)
        threshold = meta["thresholds"].get(device_class)
        if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise ModelMismatch(f"{root / THRESHOLDS_FILE}: no valid threshold for {device_class!r}")
        version = str(artifact["version"])
        if "version" in meta and meta["version"] != version:
            raise ModelMismatch(
                f"{root}: {ARTIFACT_FILES[device_class]} is version {version}, "
                f"but the thresholds are for {meta['version']}"
            )
        by_class[device_class] = ClassModel(device_class, artifact["estimator"], float(threshold), version)
    versions = sorted({m.version for m in by_class.values()})
    version = versions[0] if len(versions) == 1 else "+".join(f"{c}:{m.version}" for c, m in by_class.items())
    return Models(version=version, by_class=by_class)
