"""The shipped models on days from simulator members they never saw (models/README.md, transfer)."""

from __future__ import annotations

import datetime as dt
import json
from types import ModuleType

import numpy as np
import pytest

from sandbox import renewal, simulator
from scorer import scoring
from scorer.model import DEFAULT_DIR, THRESHOLDS_FILE, Models, load_models

FAMILIES: dict[str, ModuleType] = {"A": simulator, "B": renewal}
HELD_OUT = (900, 901)  # member numbers; the test checks training never used them


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models()


@pytest.fixture(scope="module")
def meta() -> dict[str, object]:
    data: dict[str, object] = json.loads((DEFAULT_DIR / THRESHOLDS_FILE).read_text())
    return data


@pytest.mark.parametrize("member", HELD_OUT)
@pytest.mark.parametrize("family", FAMILIES)
def test_precision_and_recall_on_a_member_never_seen(
    family: str, member: int, models: Models, meta: dict[str, object]
) -> None:
    members = meta["members"]
    assert isinstance(members, dict)
    assert family in members["families"]
    used = {k for role in ("train", "threshold", "test") for k in members[role]}
    assert member not in used
    module = FAMILIES[family]
    day = module.simulate_day(
        4242, dt.date(2025, 3, 3), n_visits=20_000, seed=member, params=module.member(member)
    )
    result = scoring.score_visits(day.visits, day.hits, models)
    positive = day.level >= 4
    picked = day.visits["ym:s:visitID"].isin(set(result["visitId"])).to_numpy()
    precision = np.count_nonzero(picked & positive) / np.count_nonzero(picked)
    recall = np.count_nonzero(picked & positive) / np.count_nonzero(positive)
    assert precision >= 0.8 and recall >= 0.4, (family, member, precision, recall)


def test_thresholds_record_how_they_were_chosen(meta: dict[str, object]) -> None:
    transfer = meta["transfer"]
    assert isinstance(transfer, dict)
    assert set(transfer) == {"A", "B", "A+B"} and meta["trained_on"] == ["A", "B"]
    assert transfer["A+B"]["thresholds"] == meta["thresholds"]
    assert meta["target_precision"] >= 0.8
    # the shipped models meet the transfer target on every test member of both families
    tests = transfer["A+B"]["test"]
    assert {row["member"][0] for row in tests} == {"A", "B"}
    for row in tests:
        assert row["precision"] >= 0.8 and row["recall"] >= 0.4, row
