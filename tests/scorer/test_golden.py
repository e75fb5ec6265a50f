"""The reader, features and scoring give what the code before the pyarrow reader gave, on the same files.

The fixture days in ``golden/`` (see ``golden/make_golden.py``) hold Logs API parts and, per visit,
what the old code computed: its features, and its score and selection under the models of the time.
The features must come out the same; the scores are checked against the current models' own
``predict_proba`` of those features (so the test holds when the models are retrained), and against
the recorded scores too while the models are the ones they were recorded with.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scorer import scoring, spill, tsv
from scorer.features import FEATURES, build_matrix
from scorer.model import Models, load_models

GOLDEN = Path(__file__).parent / "golden"
DAYS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models()


def unpack(day: str, into: Path) -> tuple[pd.DataFrame, dict[str, object]]:
    into.mkdir(parents=True, exist_ok=True)
    for part in (GOLDEN / day).glob("*.tsv.gz"):
        (into / part.name.removesuffix(".gz")).write_bytes(gzip.decompress(part.read_bytes()))
    expected = pd.read_csv(
        GOLDEN / day / "expected.csv.gz", dtype={"visitId": str, "clientId": str, "dateTime": str}
    )
    return expected, json.loads((GOLDEN / day / "expected.json").read_text())


def select_all(models: Models) -> Models:
    """The same models with threshold 0: every visit comes out, with its score."""
    by_class = {c: dataclasses.replace(m, threshold=0.0) for c, m in models.by_class.items()}
    return Models(version=models.version, by_class=by_class)


def in_output_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(_id=frame["visitId"].map(int)).sort_values(["dateTime", "_id"]).drop(columns="_id")


def expected_scores(expected: pd.DataFrame, models: Models) -> np.ndarray:
    x = expected[list(FEATURES)].to_numpy()
    mobile = expected["is_mobile"].to_numpy() == 1
    scores = np.zeros(len(expected))
    for name, rows in (("desktop", ~mobile), ("mobile", mobile)):
        scores[rows] = models.estimator(name).predict_proba(x[rows])[:, 1]
    return scores


@pytest.mark.parametrize("day", DAYS)
def test_features_are_the_recorded_ones(tmp_path: Path, day: str) -> None:
    expected, _ = unpack(day, tmp_path)
    visit_paths, hit_paths = tsv.find_parts(tmp_path)
    visits, hits = tsv.read_visits(visit_paths), tsv.read_hits(hit_paths)
    assert visits["ym:s:visitID"].tolist() == expected["visitId"].tolist()
    matrix = build_matrix(visits, hits)
    np.testing.assert_array_equal(matrix.T, expected[list(FEATURES)].to_numpy())


@pytest.mark.parametrize("day", DAYS)
def test_score_dir_gives_the_recorded_output(tmp_path: Path, day: str, models: Models) -> None:
    expected, meta = unpack(day, tmp_path / "logs")
    expected["score"] = expected_scores(expected, models)
    if meta["model_version"] == models.version:  # the models of the recording: its very scores
        recorded = pd.read_csv(GOLDEN / day / "expected.csv.gz", dtype={"visitId": str})["score"]
        np.testing.assert_allclose(expected["score"], recorded, rtol=0, atol=1e-12)
    thresholds = np.where(expected["is_mobile"] == 1, models.threshold("mobile"), models.threshold("desktop"))
    selected = in_output_order(expected[expected["score"] >= thresholds])

    result, total = scoring.score_dir(tmp_path / "logs", models)
    assert total == len(expected)
    for column in ("visitId", "clientId", "dateTime"):
        assert result[column].tolist() == selected[column].tolist(), column
    np.testing.assert_allclose(result["score"], selected["score"], rtol=0, atol=1e-12)
    assert result["visitDuration"].tolist() == selected["visit_duration"].astype(int).tolist()

    everyone, _ = scoring.score_dir(tmp_path / "logs", select_all(models))
    every = in_output_order(expected)
    assert everyone["visitId"].tolist() == every["visitId"].tolist()
    np.testing.assert_allclose(everyone["score"], every["score"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("day", DAYS)
def test_small_pieces_and_spilling_give_the_same_output(
    tmp_path: Path, day: str, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpack(day, tmp_path / "logs")
    expected, _ = scoring.score_dir(tmp_path / "logs", select_all(models))
    monkeypatch.setattr(tsv, "BLOCK_BYTES", 3000)  # many pieces per part
    monkeypatch.setattr(scoring, "SPILL_BUDGET", 20_000)  # a few spills to files on the way
    runs: list[Path] = []
    original = spill.Spill._write_run

    def write_run(self: spill.Spill) -> None:
        original(self)
        runs.append(self._runs[-1])

    monkeypatch.setattr(spill.Spill, "_write_run", write_run)
    (tmp_path / "work").mkdir()
    result, _ = scoring.score_dir(tmp_path / "logs", select_all(models), work_dir=tmp_path / "work")
    pd.testing.assert_frame_equal(result, expected)
    assert len(runs) > 2 and all(p.parent.parent == tmp_path / "work" for p in runs)
    assert list((tmp_path / "work").iterdir()) == []  # the spill directory is gone
