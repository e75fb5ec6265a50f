from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn

from scorer.features import DEVICE_CLASSES, FEATURES
from scorer.model import ARTIFACT_FILES, DEFAULT_DIR, THRESHOLDS_FILE, ModelMismatch, load_models


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """A private copy of the shipped artifacts, safe to tamper with."""
    for name in (*ARTIFACT_FILES.values(), THRESHOLDS_FILE):
        shutil.copy(DEFAULT_DIR / name, tmp_path / name)
    return tmp_path


def test_shipped_artifacts_load() -> None:
    models = load_models()
    meta = json.loads((DEFAULT_DIR / THRESHOLDS_FILE).read_text())
    assert models.version == meta["version"]
    assert set(models.by_class) == set(DEVICE_CLASSES)
    for name in DEVICE_CLASSES:
        assert models.threshold(name) == meta["thresholds"][name]
        assert 0.0 < models.threshold(name) < 1.0
        proba = models.estimator(name).predict_proba(np.zeros((3, len(FEATURES))))
        assert proba.shape == (3, 2)
    assert load_models(DEFAULT_DIR).version == models.version


def test_shipped_artifacts_are_small_and_match_this_code() -> None:
    meta = json.loads((DEFAULT_DIR / THRESHOLDS_FILE).read_text())
    assert meta["features"] == list(FEATURES)
    assert meta["sklearn_version"] == sklearn.__version__
    for name, file in ARTIFACT_FILES.items():
        path = DEFAULT_DIR / file
        assert path.stat().st_size < 2_000_000
        artifact = joblib.load(path)
        assert artifact["device_class"] == name
        assert artifact["features"] == list(FEATURES)
        assert artifact["version"] == meta["version"]
    # the README reports the metrics the training run wrote: one row per test member
    assert meta["test_metrics"] and all(
        {"member", "precision", "recall", "auc"} <= set(row) for row in meta["test_metrics"]
    )


def test_artifact_with_other_features_is_refused(copied: Path) -> None:
    path = copied / ARTIFACT_FILES["mobile"]
    artifact = joblib.load(path)
    artifact["features"] = [*FEATURES[:-1], "scroll_depth"]
    joblib.dump(artifact, path)
    with pytest.raises(ModelMismatch, match="scroll_depth"):
        load_models(copied)


def test_artifact_with_reordered_features_is_refused(copied: Path) -> None:
    path = copied / ARTIFACT_FILES["desktop"]
    artifact = joblib.load(path)
    artifact["features"] = list(reversed(FEATURES))
    joblib.dump(artifact, path)
    with pytest.raises(ModelMismatch, match="features"):
        load_models(copied)


def test_missing_artifact_is_refused(copied: Path) -> None:
    (copied / ARTIFACT_FILES["desktop"]).unlink()
    with pytest.raises(ModelMismatch, match="not found"):
        load_models(copied)


def test_missing_thresholds_are_refused(copied: Path) -> None:
    (copied / THRESHOLDS_FILE).unlink()
    with pytest.raises(ModelMismatch, match="not found"):
        load_models(copied)


def test_artifacts_from_another_training_run_are_refused(copied: Path) -> None:
    meta = json.loads((copied / THRESHOLDS_FILE).read_text())
    meta["version"] = "level4-slot-0000000000"
    (copied / THRESHOLDS_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelMismatch, match="version"):
        load_models(copied)


def test_artifact_for_the_other_device_class_is_refused(copied: Path) -> None:
    shutil.copy(copied / ARTIFACT_FILES["mobile"], copied / ARTIFACT_FILES["desktop"])
    with pytest.raises(ModelMismatch, match="mobile"):
        load_models(copied)


def test_not_an_artifact_is_refused(copied: Path) -> None:
    joblib.dump({"estimator": None}, copied / ARTIFACT_FILES["desktop"])
    with pytest.raises(ModelMismatch, match="not a model artifact"):
        load_models(copied)
    (copied / ARTIFACT_FILES["desktop"]).write_bytes(b"garbage")
    with pytest.raises(ModelMismatch, match="cannot load"):
        load_models(copied)


def test_bad_threshold_is_refused(copied: Path) -> None:
    meta = json.loads((copied / THRESHOLDS_FILE).read_text())
    meta["thresholds"]["mobile"] = 1.5
    (copied / THRESHOLDS_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelMismatch, match="threshold"):
        load_models(copied)
