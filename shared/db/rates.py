"""Queries of the rate_windows table: "at most N requests in any 60 s" per subject (a webhook, an API key),
shared by every gateway replica.

One row per subject: `counts` holds how many requests were granted in each of the last 61 whole seconds,
`counts[61]` being the Unix second `second`. A request is granted while the sum of those counts is below
the limit. Every second that overlaps the last 60 s is counted whole, so a slot frees up to a second late,
never early: no 60-second span ever holds more than N granted requests (a fixed one-minute window let 2N
through around a minute boundary). Refused requests are not counted, so a sender that keeps retrying is
let through again as soon as a slot frees.

The row is read and written by one INSERT ... ON CONFLICT DO UPDATE, which locks the subject's row and
sees its latest committed version: concurrent statements on any replica queue on that row, and none can
grant a slot another has just taken.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from shared.db import Executor

WINDOW_S = 60


def take_sql(wanted: str, limit: str) -> str:
    """The statement granting up to `wanted.wanted` requests (at most `limit` in any 60 s) to each
    `wanted.subject`; `wanted` is a relation (subject text, wanted int) with one row per subject, `limit`
    a parameter. Its RETURNING gives, per subject: `granted` now, and `seconds_left` until the next slot
    frees if the subject is now full. Each subject's row is locked: order `wanted` by subject."""
    return f"""
INSERT INTO rate_windows AS w (subject, second, counts, granted)
SELECT wanted.subject, floor(extract(epoch FROM now()))::bigint,
       array_fill(0, ARRAY[60]) || least(wanted.wanted, {limit}), least(wanted.wanted, {limit})
FROM {wanted}
ON CONFLICT (subject) DO UPDATE SET (second, counts, granted) = (
    SELECT now_s, kept[1:60] || (kept[61] + n), n
    FROM (
        SELECT now_s, kept,
               least(EXCLUDED.granted, greatest(0, {limit} - (SELECT sum(c) FROM unnest(kept) AS c)))::int
               AS n
        FROM (
            -- shift the counts to end at this second (a statement that waited for the lock may carry an
            -- earlier now(): it counts in the newest second, which only frees its slot later)
            SELECT now_s, CASE WHEN now_s - w.second >= 61 THEN array_fill(0, ARRAY[61])
                               ELSE w.counts[(now_s - w.second + 1)::int:61]
                                    || array_fill(0, ARRAY[(now_s - w.second)::int])
                          END AS kept
            FROM (SELECT greatest(EXCLUDED.second, w.second) AS now_s) AS t
        ) AS shifted
    ) AS taken
)
RETURNING w.subject, w.granted, (
    -- the oldest seconds must pass until fewer than `limit` are left; second i stops counting at second+i
    SELECT w.second + min(i) - extract(epoch FROM now())::float
    FROM (
        SELECT i, sum(w.counts[i]) OVER (ORDER BY i) AS cum, sum(w.counts[i]) OVER () AS total
        FROM generate_subscripts(w.counts, 1) AS i
    ) AS c
    WHERE cum > total - {limit}
) AS seconds_left"""


TAKE = take_sql("(SELECT $1::text AS subject, 1 AS wanted) AS wanted", "$2")


class Verdict(NamedTuple):
    granted: bool
    retry_after_s: int  # whole seconds until a slot frees (when not granted)


async def take(db: Executor, subject: str, limit: int) -> Verdict:
    """Count one request of `subject` if it is within `limit` requests in any 60 s."""
    row = await db.fetchrow(TAKE, subject, limit)
    assert row is not None
    return Verdict(row["granted"] > 0, retry_after(row["seconds_left"]))


def retry_after(seconds_left: float | None) -> int:
    return max(1, math.ceil(seconds_left or 0))
