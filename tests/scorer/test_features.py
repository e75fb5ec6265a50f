from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from sandbox.simulator import simulate_day
from scorer import join
from scorer.features import FEATURES, FeatureError, build_features, device_class
from scorer.parsing import datetimes, id_lists, uint64s

BIG = 2**64 - 1000  # watch ids above 2**63 on purpose


def w(i: int) -> str:
    return str(BIG + i)


def visits_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in ("ym:s:visitID", "ym:s:clientID", "ym:s:watchIDs", "ym:s:dateTime", "ym:s:deviceCategory"):
        frame[col] = frame[col].astype(str)
    return frame


def hits_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ym:pv:watchID": pd.Series([r[0] for r in rows], dtype=str),
            "ym:pv:dateTime": pd.Series([r[1] for r in rows], dtype=str),
        }
    )


@pytest.fixture
def tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    visits = visits_frame(
        [
            {  # four joined hits listed out of time order, one listed hit never exported
                "ym:s:visitID": str(2**64 - 1),
                "ym:s:clientID": str(2**63),
                "ym:s:watchIDs": f"[{w(13)},{w(11)},{w(14)},{w(12)},{w(19)}]",
                "ym:s:dateTime": "2024-03-01 10:00:00",
                "ym:s:visitDuration": 75,
                "ym:s:pageViews": 3,
                "ym:s:bounce": 0,
                "ym:s:deviceCategory": "1",
            },
            {  # a single hit
                "ym:s:visitID": "2",
                "ym:s:clientID": "20",
                "ym:s:watchIDs": f"[{w(21)}]",
                "ym:s:dateTime": "2024-03-01 23:59:50",
                "ym:s:visitDuration": 4,
                "ym:s:pageViews": 1,
                "ym:s:bounce": 1,
                "ym:s:deviceCategory": "2",
            },
            {  # no hits at all
                "ym:s:visitID": "3",
                "ym:s:clientID": "30",
                "ym:s:watchIDs": "[]",
                "ym:s:dateTime": "2024-03-01 12:00:00",
                "ym:s:visitDuration": 0,
                "ym:s:pageViews": 1,
                "ym:s:bounce": 1,
                "ym:s:deviceCategory": "4",
            },
        ]
    )
    hits = hits_frame(
        [
            (w(14), "2024-03-01 10:01:00"),  # +60 s -> slot 4
            (w(21), "2024-03-01 23:59:50"),
            (w(11), "2024-03-01 10:00:00"),  # +0 s -> slot 0
            (w(15), "2024-03-01 10:00:10"),  # V1's, but missing from its watchIDs: not joined
            (w(13), "2024-03-01 10:00:31"),  # +31 s -> slot 2
            (w(12), "2024-03-01 10:00:05"),  # +5 s -> slot 0
            (w(99), "2024-03-01 08:00:00"),  # belongs to no visit
        ]
    )
    return visits, hits


def test_hand_computed_slots_and_pauses(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    visits, hits = tiny
    f = build_features(visits, hits)
    assert list(f.columns) == list(FEATURES)
    assert f.index.equals(visits.index)
    v1 = f.iloc[0]
    # offsets 0, 5, 31, 60 s -> slots 0, 0, 2, 4; pauses 5, 26, 29 s
    assert v1["hits"] == 4
    assert v1["watch_ids"] == 5
    assert v1["active_slots"] == 3
    assert v1["slot_range"] == 5
    assert v1["slot_density"] == pytest.approx(3 / 5)
    assert v1["hits_per_slot"] == pytest.approx(4 / 3)
    assert v1["pause_mean"] == pytest.approx(20.0)
    assert v1["pause_max"] == 29
    assert v1["pause_std"] == pytest.approx(math.sqrt((15**2 + 6**2 + 9**2) / 3))
    assert v1["pause_median"] == 26
    assert (v1["visit_duration"], v1["page_views"], v1["bounce"]) == (75, 3, 0)
    assert (v1["is_mobile"], v1["device_category"]) == (0, 1)


def test_single_hit_and_no_hit_visits(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    visits, hits = tiny
    f = build_features(visits, hits)
    v2, v3 = f.iloc[1], f.iloc[2]
    assert (v2["hits"], v2["active_slots"], v2["slot_range"], v2["slot_density"]) == (1, 1, 1, 1)
    assert (v2["pause_mean"], v2["pause_max"], v2["pause_std"], v2["pause_median"]) == (0, 0, 0, 0)
    assert (v2["is_mobile"], v2["device_category"]) == (1, 2)
    hit_cols = [c for c in FEATURES if c not in ("visit_duration", "page_views", "bounce", "device_category")]
    assert (v3[hit_cols] == 0).all()
    assert (v3["device_category"], v3["bounce"]) == (4, 1)


def test_even_pause_count_median_and_same_second_hits() -> None:
    visits = visits_frame(
        [
            {
                "ym:s:visitID": "1",
                "ym:s:clientID": "1",
                "ym:s:watchIDs": "[1,2,3,4,5]",
                "ym:s:dateTime": "2024-03-01 00:00:00",
                "ym:s:visitDuration": 100,
                "ym:s:pageViews": 2,
                "ym:s:bounce": 0,
                "ym:s:deviceCategory": "3",
            }
        ]
    )
    hits = hits_frame(
        [
            ("1", "2024-03-01 00:00:00"),
            ("2", "2024-03-01 00:00:00"),  # same second: a 0 s pause, same slot
            ("3", "2024-03-01 00:00:14"),  # still slot 0
            ("4", "2024-03-01 00:00:15"),  # slot 1
            ("5", "2024-03-01 00:01:30"),  # slot 6
        ]
    )
    f = build_features(visits, hits).iloc[0]
    assert (f["hits"], f["active_slots"], f["slot_range"]) == (5, 3, 7)
    assert f["pause_median"] == (1 + 14) / 2  # pauses 0, 14, 1, 75 -> sorted 0, 1, 14, 75
    assert f["pause_max"] == 75
    assert f["is_mobile"] == 1  # tablet counts as mobile


def test_hit_order_and_duplicate_hit_rows_do_not_matter(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    visits, hits = tiny
    expected = build_features(visits, hits)
    shuffled = hits.sample(frac=1.0, random_state=3).reset_index(drop=True)
    doubled = pd.concat([shuffled, shuffled], ignore_index=True)  # e.g. overlapping parts
    pd.testing.assert_frame_equal(build_features(visits, doubled), expected)


def test_no_hits_file_rows_at_all(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    visits, hits = tiny
    f = build_features(visits, hits.iloc[:0])
    assert (f["hits"] == 0).all() and (f["pause_max"] == 0).all()
    assert list(f["watch_ids"]) == [5, 1, 0]


def test_empty_visits(tiny: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    visits, hits = tiny
    f = build_features(visits.iloc[:0], hits)
    assert f.shape == (0, len(FEATURES))


def _lists(rows: list[str]) -> tuple[list[int], list[int]]:
    ids, per_row = id_lists(pd.Series(rows, dtype=str))
    return ids.tolist(), np.repeat(np.arange(len(rows)), per_row).tolist()


def test_ids_above_2_63_parse_exactly_and_bad_ids_are_refused() -> None:
    values = [
        "0",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "10000000000000000000",
    ]
    assert uint64s(pd.Series(values, dtype=str)).tolist() == [int(v) for v in values]
    for bad in (
        "18446744073709551616",
        "99999999999999999999",
        "123456789012345678901",
        "12a",
        "",
        "-1",
        "+5",
        "1.5e18",
        " 12",
        "12 ",
        "1\x002",
        "0x10",
    ):
        with pytest.raises(FeatureError):
            uint64s(pd.Series(["7", bad], dtype=str))
    assert _lists(["[1,2]", "[]", f"[{2**64 - 1}]"]) == ([1, 2, 2**64 - 1], [0, 0, 2])
    bad_lists = ("[1,,2]", "[1,2", "1,2]", "[,1]", "[1,]", "[1 ,2]", "[[1]", "[1]]", "", "[1]2]", "[1;2]")
    for bad in (
        *bad_lists,
        "[1]\n[2]",
        "[,]",
        "[ ]",
        "[]]",
        "[[]",
        f"[{2**64}]",
        "[123456789012345678901]",
        "[",
    ):
        with pytest.raises(FeatureError):
            id_lists(pd.Series([bad], dtype=str))
        with pytest.raises(FeatureError):  # a bad row among good ones
            id_lists(pd.Series(["[5]", bad, "[7,8]"], dtype=str))


def test_ids_of_every_length_parse_exactly_alone_and_in_lists() -> None:
    rng = np.random.default_rng(7)
    # Every length from 1 to 20 digits, the largest UInt64s, and random ones.
    values = [int("9" * k) for k in range(1, 20)] + [10**k for k in range(20)] + [2**64 - 1, 2**63, 2**63 - 1]
    values += (
        rng.integers(0, 2**64, 5000, dtype=np.uint64) >> rng.integers(0, 64, 5000).astype(np.uint64)
    ).tolist()
    assert uint64s(pd.Series([str(v) for v in values], dtype=str)).tolist() == values
    rows = ["[" + ",".join(str(v) for v in values[i : i + 7]) + "]" for i in range(0, len(values), 7)]
    assert _lists(rows) == (values, [i // 7 for i in range(len(values))])


def test_datetimes_parse_exactly_and_refuse_other_spellings() -> None:
    values = pd.Series(
        ["2024-02-29 23:59:59", "1970-01-01 00:00:00", "2038-01-19 03:14:08", "2100-03-01 12:00:00"]
    )
    expected = pd.to_datetime(values).to_numpy(dtype="datetime64[s]").astype(np.int64)
    assert datetimes(values).tolist() == expected.tolist() == [1709251199, 0, 2147483648, 4107585600]
    for bad in (
        "2023-02-29 00:00:00",
        "2024-02-30 00:00:00",
        "2024-13-01 00:00:00",
        "2024-01-01 24:00:00",
        "2024-01-01 23:59:60",
        "2024-01-0x 00:00:00",
        "2024-02-29 23:59:5",
        "2024-02-29 23:59:590",
        "2024-02-29T23:59:59",
        "2024-03-01 10:00:00.5",
        "2024-03-01",
        "2024-03-01 10:00",
        "2024-3-1 10:00:00",
        "",
    ):
        with pytest.raises(FeatureError):
            datetimes(pd.Series(["2024-01-01 00:00:00", bad]))


def test_device_class_rule() -> None:
    got = device_class(pd.Series(["1", "2", "3", "4", "", "7"], dtype=str))
    assert got.tolist() == ["desktop", "mobile", "mobile", "desktop", "desktop", "desktop"]
    assert device_class(pd.Series([1, 2, 3, 4])).tolist() == ["desktop", "mobile", "mobile", "desktop"]


def reference(visits: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """Per-visit Python restatement of the feature definitions."""
    when: dict[int, dt.datetime] = {}
    for watch_id, text in zip(hits["ym:pv:watchID"], hits["ym:pv:dateTime"], strict=True):
        when.setdefault(int(watch_id), dt.datetime.fromisoformat(text))
    rows = []
    for _, v in visits.iterrows():
        start = dt.datetime.fromisoformat(v["ym:s:dateTime"])
        listed = [int(x) for x in v["ym:s:watchIDs"].strip("[]").split(",") if x]
        offs = sorted(max(0, int((when[i] - start).total_seconds())) for i in listed if i in when)
        slots = [o // 15 for o in offs]
        gaps = [b - a for a, b in zip(offs, offs[1:], strict=False)]
        active = len(set(slots))
        span = slots[-1] - slots[0] + 1 if slots else 0
        code = int(v["ym:s:deviceCategory"])
        rows.append(
            [
                len(offs),
                len(listed),
                active,
                span,
                active / span if span else 0,
                len(offs) / active if active else 0,
                statistics.fmean(gaps) if gaps else 0,
                max(gaps, default=0),
                statistics.pstdev(gaps) if gaps else 0,
                statistics.median(gaps) if gaps else 0,
                v["ym:s:visitDuration"],
                v["ym:s:pageViews"],
                v["ym:s:bounce"],
                code in (2, 3),
                code,
            ]
        )
    return pd.DataFrame(rows, columns=list(FEATURES), index=visits.index).astype(float)


def test_matches_per_visit_reference_on_a_simulated_day(monkeypatch: pytest.MonkeyPatch) -> None:
    day = simulate_day(31, dt.date(2024, 5, 6), n_visits=1500, seed=4)
    expected = reference(day.visits, day.hits)
    pd.testing.assert_frame_equal(build_features(day.visits, day.hits), expected, rtol=1e-9, atol=1e-9)
    # Many buckets, joined on several threads: the very same result.
    monkeypatch.setattr(join, "HITS_PER_BUCKET", 16)
    assert join.bits_for(len(day.hits)) >= 8
    pd.testing.assert_frame_equal(build_features(day.visits, day.hits), expected, rtol=1e-9, atol=1e-9)
    # Hits as scorer.tsv reads them (uint64 ids, datetime64 times): the same features.
    typed = pd.DataFrame(
        {
            "ym:pv:watchID": day.hits["ym:pv:watchID"].map(int).astype(np.uint64),
            "ym:pv:dateTime": pd.to_datetime(day.hits["ym:pv:dateTime"]).astype("datetime64[s]"),
        }
    )
    pd.testing.assert_frame_equal(build_features(day.visits, typed), expected, rtol=1e-9, atol=1e-9)
