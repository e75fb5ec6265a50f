"""Load the level-4+ model artifacts: one classifier per device class plus their thresholds.

An artifact is only accepted if it was trained on exactly ``features.FEATURES`` (same names, same
order) with the scikit-learn release this process runs; anything else is refused with
``ModelMismatch`` rather than silently scoring garbage.  Artifacts are pickles: load only the ones
shipped in the repository (or built by ``models/train.py``).

Scoring uses each estimator compiled to leaf tables (``scorer.forest``).  The first load of an
artifact checks and compiles it (importing scikit-learn, about a second) and keeps the tables in
the user's cache directory, keyed by the artifact's bytes and the scikit-learn and numpy releases;
later loads take the tables from there (plain arrays, no pickle) and unpickle the estimator only if
something asks for it.  The cache is an optimisation: when it cannot be read or written, loading
works as before.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from scorer import forest
from scorer.features import DEVICE_CLASSES, FEATURES

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models"
ARTIFACT_FILES: dict[str, str] = {
    "desktop": "level4_desktop_slot.joblib",
    "mobile": "level4_mobile_slot.joblib",
}
THRESHOLDS_FILE = "level4_thresholds.json"
_CACHE_FORMAT = "forest-2"
logger = logging.getLogger(__name__)


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
    forest: forest.Forest | None = None  # the estimator compiled; None: it cannot be, use predict_proba


class _Deferred:
    """An artifact's estimator, unpickled (with scikit-learn) on first use."""

    def __init__(self, path: Path, device_class: str) -> None:
        self._path = path
        self._device_class = device_class
        self._estimator: Any = None

    def _loaded(self) -> Any:
        if self._estimator is None:
            self._estimator = _load_artifact(self._path, self._device_class)["estimator"]
        return self._estimator

    def predict_proba(self, x: Any) -> npt.NDArray[np.float64]:
        proba: npt.NDArray[np.float64] = self._loaded().predict_proba(x)
        return proba

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loaded(), name)

    def __repr__(self) -> str:
        return f"<{self._path.name}, not unpickled yet>"


@dataclass(frozen=True)
class Models:
    version: str
    by_class: Mapping[str, ClassModel]

    def estimator(self, device_class: str) -> Estimator:
        return self.by_class[device_class].estimator

    def threshold(self, device_class: str) -> float:
        return self.by_class[device_class].threshold


def _load_artifact(path: Path, device_class: str) -> dict[str, Any]:
    import joblib  # scikit-learn comes with the pickle: only when an artifact is unpickled
    from sklearn.exceptions import InconsistentVersionWarning

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


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metrika-score"


def _cache_key(artifact: bytes) -> str:
    releases = f"sklearn {importlib.metadata.version('scikit-learn')} numpy {np.__version__}"
    return f"{_CACHE_FORMAT} {hashlib.sha256(artifact).hexdigest()} {releases} {' '.join(FEATURES)}"


def _cache_path(key: str) -> Path:
    return _cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.npz"


def _cached(key: str, device_class: str) -> tuple[str, forest.Forest] | None:
    """(version, compiled forest) of the artifact with ``key``, if the cache holds it."""
    try:
        with np.load(_cache_path(key), allow_pickle=False) as stored:
            if str(stored["key"]) != key or str(stored["device_class"]) != device_class:
                return None
            return str(stored["version"]), forest.Forest.from_arrays(stored)
    except (OSError, ValueError, KeyError) as exc:
        if not isinstance(exc, FileNotFoundError):
            logger.warning("model cache: cannot read %s (%s); compiling again", _cache_path(key), exc)
        return None


def _cache(key: str, device_class: str, version: str, compiled: forest.Forest) -> None:
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as out:
            arrays: dict[str, Any] = {"key": key, "device_class": device_class, "version": version}
            arrays.update(compiled.arrays())
            np.savez(out, **arrays)
        os.replace(out.name, path)
    except OSError as exc:
        logger.info("model cache: cannot write %s (%s); the next load compiles again", path, exc)


def _load_class(path: Path, device_class: str) -> tuple[Estimator, str, forest.Forest | None]:
    """(estimator, version, compiled forest) of one artifact: the tables from the cache if it has
    them (the estimator then unpickled only on first use), else checked, compiled and cached."""
    try:
        key = _cache_key(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelMismatch(f"{path}: model artifact not found") from exc
    except OSError as exc:
        raise ModelMismatch(f"{path}: cannot read: {exc}") from exc
    cached = _cached(key, device_class)
    if cached is not None:
        return _Deferred(path, device_class), *cached
    artifact = _load_artifact(path, device_class)
    estimator, version = artifact["estimator"], str(artifact["version"])
    compiled = forest.compiled(estimator)
    if compiled is not None:
        _cache(key, device_class, version, compiled)
    return estimator, version, compiled


def load_models(directory: Path | str | None = None) -> Models:
    """Load and check both device-class models and thresholds from ``directory`` (default: models/)."""
    root = Path(directory) if directory is not None else DEFAULT_DIR
    meta = _load_thresholds(root / THRESHOLDS_FILE)
    by_class: dict[str, ClassModel] = {}
    for device_class in DEVICE_CLASSES:
        estimator, version, compiled = _load_class(root / ARTIFACT_FILES[device_class], device_class)
        threshold = meta["thresholds"].get(device_class)
        if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise ModelMismatch(f"{root / THRESHOLDS_FILE}: no valid threshold for {device_class!r}")
        if "version" in meta and meta["version"] != version:
            raise ModelMismatch(
                f"{root}: {ARTIFACT_FILES[device_class]} is version {version}, "
                f"but the thresholds are for {meta['version']}"
            )
        by_class[device_class] = ClassModel(device_class, estimator, float(threshold), version, compiled)
    versions = sorted({m.version for m in by_class.values()})
    version = versions[0] if len(versions) == 1 else "+".join(f"{c}:{m.version}" for c, m in by_class.items())
    return Models(version=version, by_class=by_class)
