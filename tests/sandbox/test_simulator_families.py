"""The two simulator families the models are trained on: family A (sandbox.simulator, whose DEFAULT is
the sandbox's day) and family B (sandbox.renewal)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
from types import ModuleType

import numpy as np
import pytest

from sandbox import renewal, simulator
from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, WATCH_IDS_CAP, Day, write_tsv
from scorer.features import FEATURES, build_matrix

FAMILIES = {"A": simulator, "B": renewal}
DAY = dt.date(2024, 5, 6)
_HITS, _WATCH_IDS = FEATURES.index("hits"), FEATURES.index("watch_ids")


def _fingerprint(day: Day) -> str:
    out = io.StringIO()
    write_tsv(day.visits, VISIT_FIELDS, out)
    write_tsv(day.hits, HIT_FIELDS, out)
    out.write(",".join(map(str, day.level.tolist())))
    return hashlib.sha256(out.getvalue().encode()).hexdigest()


def test_the_sandbox_day_is_what_it_was_before_the_families() -> None:
    # The digest of this day as the simulator produced it before it had parameters (commit 16d32eb).
    day = simulator.simulate_day(5, DAY, n_visits=500, seed=3)
    assert _fingerprint(day) == "1514e667bef5867a90702b0d9a71490369ea9219ebfd4ec95a217068722c00f7"
    again = simulator.simulate_day(5, DAY, n_visits=500, seed=3, params=simulator.DEFAULT)
    assert _fingerprint(again) == _fingerprint(day)


@pytest.mark.parametrize("family", FAMILIES)
def test_members_are_drawn_by_number_and_differ(family: str) -> None:
    module: ModuleType = FAMILIES[family]
    assert module.member(7) == module.member(7)
    members = [module.member(k) for k in range(1, 41)]
    assert len({repr(m) for m in members}) == len(members)
    high = np.array([sum(m.level_p[4:]) for m in members])
    mobile = np.array([m.device_p[1] + m.device_p[2] for m in members])
    for m in members:
        assert np.isclose(sum(m.level_p), 1.0) and np.isclose(sum(m.device_p), 1.0)
        assert min(m.level_p) > 0 and min(m.device_p) >= 0
    # the engagement and device mixes really vary from member to member
    assert high.min() < 0.1 and high.max() > 0.3
    assert mobile.min() < 0.3 and mobile.max() > 0.7
    day_a = module.simulate_day(11, DAY, n_visits=300, seed=1, params=members[0])
    day_b = module.simulate_day(11, DAY, n_visits=300, seed=1, params=members[0])
    assert _fingerprint(day_a) == _fingerprint(day_b)


def test_family_a_draws_every_pause_shape() -> None:
    dists = {simulator.member(k).gap_dist for k in range(1, 41)}
    assert dists == set(simulator.GAP_DISTS)
    for dist in simulator.GAP_DISTS:
        params = dataclasses.replace(simulator.DEFAULT, gap_dist=dist)
        day = simulator.simulate_day(12, DAY, n_visits=2000, seed=2, params=params)
        x = build_matrix(day.visits, day.hits)
        pause_mean = x[FEATURES.index("pause_mean")]
        # the same means whatever the shape: engaged visits pause longer on average
        assert np.median(pause_mean[day.level == 5]) > 1.5 * np.median(pause_mean[day.level == 2])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("member", [None, 3, 4])
def test_a_day_of_any_member_looks_like_a_logs_api_export(family: str, member: int | None) -> None:
    module: ModuleType = FAMILIES[family]
    params = module.DEFAULT if member is None else module.member(member)
    day = module.simulate_day(13, DAY, n_visits=4000, seed=5, params=params)
    assert list(day.visits.columns) == VISIT_FIELDS and list(day.hits.columns) == HIT_FIELDS
    assert set(np.unique(day.level)) == set(range(6))
    assert day.visits["ym:s:visitID"].is_unique and day.hits["ym:pv:watchID"].is_unique
    assert (day.visits["ym:s:dateTime"].str.slice(0, 10) == DAY.isoformat()).all()
    assert set(day.visits["ym:s:deviceCategory"]) <= {"1", "2", "3", "4"}
    x = build_matrix(day.visits, day.hits)
    hits, listed = x[_HITS], x[_WATCH_IDS]
    assert (hits >= 1).all()  # a visit's first hit is always listed and exported
    assert (listed <= WATCH_IDS_CAP).all()
    # ground truth shapes what the logs show: level 4+ visits have more hits and last longer
    high = day.level >= 4
    duration = day.visits["ym:s:visitDuration"].to_numpy()
    assert np.median(hits[high]) > 2 * np.median(hits[~high])
    assert np.median(duration[high]) > 3 * np.median(duration[~high])
    assert abs(high.mean() - sum(params.level_p[4:])) < 0.03


def test_family_b_loses_hits_in_bursts_and_cuts() -> None:
    lossless = dataclasses.replace(
        renewal.DEFAULT, burst_p=0.0, cut_p=0.0, unlisted_p=0.0, unexported_p=0.0, orphan_p=0.0
    )
    day = renewal.simulate_day(14, DAY, n_visits=3000, seed=6, params=lossless)
    x = build_matrix(day.visits, day.hits)
    assert (x[_HITS] == x[_WATCH_IDS]).all()
    assert len(day.hits) == int(x[_HITS].sum())

    bursts = dataclasses.replace(lossless, burst_p=1.0)
    day = renewal.simulate_day(14, DAY, n_visits=3000, seed=6, params=bursts)
    x = build_matrix(day.visits, day.hits)
    several = x[_WATCH_IDS] >= 2
    assert (x[_HITS][several] < x[_WATCH_IDS][several]).all()  # listed, not exported

    cuts = dataclasses.replace(lossless, cut_p=1.0)
    day = renewal.simulate_day(14, DAY, n_visits=3000, seed=6, params=cuts)
    x = build_matrix(day.visits, day.hits)
    assert (x[_HITS] == x[_WATCH_IDS]).all()
    assert len(day.hits) > int(x[_HITS].sum())  # exported, but joined to no visit


def test_family_b_pauses_stay_within_a_session() -> None:
    lossless = {"burst_p": 0.0, "cut_p": 0.0, "unlisted_p": 0.0, "unexported_p": 0.0}
    params = dataclasses.replace(
        renewal.DEFAULT, read_alpha=1.05, switch_p=0.5, switch_mean=3000.0, **lossless
    )
    day = renewal.simulate_day(15, DAY, n_visits=2000, seed=7, params=params)
    x = build_matrix(day.visits, day.hits)
    assert x[FEATURES.index("pause_max")].max() <= renewal.SESSION_TIMEOUT
