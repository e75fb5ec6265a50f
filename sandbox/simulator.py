"""Seeded simulator of one day of Yandex Metrika Logs API data (visits + hits) with ground truth.

Every visit carries a latent engagement level 0..5; the level shapes how many hits the visit has,
how the pauses between them look, its duration, bounce and page views.  The frames hold values in
the shape the Logs API TSV shows them (ids as decimal strings, ``watchIDs`` as ``"[1,2,3]"``), so
``write_tsv`` can emit files that are byte-compatible with a real export.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import IO

import numpy as np
import numpy.typing as npt
import pandas as pd

VISIT_FIELDS: list[str] = [
    "ym:s:visitID",
    "ym:s:counterID",
    "ym:s:watchIDs",
    "ym:s:dateTime",
    "ym:s:clientID",
    "ym:s:visitDuration",
    "ym:s:pageViews",
    "ym:s:bounce",
    "ym:s:deviceCategory",
    "ym:s:isNewUser",
    "ym:s:startURL",
]

HIT_FIELDS: list[str] = [
    "ym:pv:watchID",
    "ym:pv:counterID",
    "ym:pv:clientID",
    "ym:pv:dateTime",
    "ym:pv:URL",
    "ym:pv:isPageView",
    "ym:pv:deviceCategory",
]

# Yandex lists at most this many hit ids in ym:s:watchIDs.
WATCH_IDS_CAP = 500
# ... and a session records at most this many events before a new session starts.
MAX_HITS_PER_VISIT = 1000
# Shares of hits missing from watchIDs, listed but not exported, and exported for no visit of the day.
_UNLISTED_P = 0.005
_UNEXPORTED_P = 0.002
_ORPHAN_P = 0.003

DEFAULT_VISITS = 3000
N_LEVELS = 6

# Skewed: level 4+ is ~15 % of visits.
_LEVEL_P = np.array([0.28, 0.22, 0.20, 0.15, 0.10, 0.05])
# deviceCategory codes: 1 desktop, 2 phone, 3 tablet, 4 TV.
_DEVICE_P = np.array([0.52, 0.38, 0.08, 0.02])

# Per level: mean extra hits beyond the first, gap-shape (regularity) and mean gap in seconds.
_EXTRA_HITS = np.array([0.12, 0.9, 2.4, 4.5, 9.0, 16.0])
_GAP_SHAPE = np.array([0.5, 0.7, 0.9, 1.3, 2.6, 3.4])
_GAP_MEAN = np.array([6.0, 10.0, 16.0, 24.0, 34.0, 40.0])
_TAIL_MEAN = np.array([3.0, 9.0, 20.0, 32.0, 50.0, 60.0])
_PAGEVIEW_P = np.array([0.75, 0.65, 0.55, 0.5, 0.45, 0.42])
_NEW_USER_P = np.array([0.75, 0.7, 0.6, 0.5, 0.4, 0.35])


_PATHS = [
    "/",
    "/catalog",
    "/catalog/shoes",
    "/catalog/shoes?size=42&color=red",
    "/product/12345",
    "/product/67890",
    "/cart",
    "/checkout",
    "/blog/how-to-choose",
    "/blog/спецпредложения",
    "/contacts",
    "/search?q=red shoes",
    # Rare, but real exports do carry such bytes; they exercise the TSV escaping.
    "/search?q=tab\there",
    "/search?q=back\\slash",
]
_PATH_P = np.array([0.2, 0.12, 0.1, 0.05, 0.1, 0.08, 0.08, 0.05, 0.07, 0.04, 0.04, 0.063, 0.0035, 0.0035])


@dataclass(frozen=True)
class Day:
    visits: pd.DataFrame  # VISIT_FIELDS, one row per visit
    hits: pd.DataFrame  # HIT_FIELDS, one row per event, in no particular order
    level: npt.NDArray[np.int64]  # ground-truth engagement level 0..5 of each visits row


def _rng(counter: int, day: datetime.date, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([counter & 0xFFFFFFFF, day.toordinal(), seed, stream])
    )


def default_visits(counter: int, day: datetime.date, seed: int = 0) -> int:
    """Visits on a day when not given: ~3000, +-15 % by counter and day."""
    return int(DEFAULT_VISITS * _rng(counter, day, seed, 1).uniform(0.85, 1.15))


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a bijection on uint64, so mixed sequential ids stay unique but look random."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: npt.NDArray[np.uint64] = x ^ (x >> np.uint64(31))
    return out


def _ids(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint64]:
    offset = np.uint64(rng.integers(0, 2**64, dtype=np.uint64, endpoint=False))
    with np.errstate(over="ignore"):
        return _mix(np.arange(n, dtype=np.uint64) + offset)


_QUAD = np.uint64(10_000)
_N_QUADS = 5  # 2**64 - 1 has 20 decimal digits
_RENDER_CHUNK = 1 << 18


def _quad_table() -> npt.NDArray[np.uint32]:
    """Four ASCII digits per entry, as one uint32 each, for 0..9999 in three variants.

    Row block 0: inner quad ("0042"); block 1: the leading quad, zeros blanked to NUL ("42");
    block 2: above the leading quad (all NUL).  NULs are stripped after rendering.
    """
    inner = "".join(f"{i:04d}" for i in range(10_000)).encode()
    lead = "".join(f"{i:>4d}" for i in range(10_000)).replace(" ", "\0").encode()
    raw = inner + lead + b"\0" * 40_000
    return np.frombuffer(raw, dtype=np.uint8).view(np.uint32).copy()


_QUADS = _quad_table()


def _render(
    values: npt.NDArray[np.uint64], prefix: npt.NDArray[np.uint8], suffix: npt.NDArray[np.uint8]
) -> str:
    """Decimal text of ``values``, each with one optional prefix byte and two suffix bytes (0 = none).

    Built as one uint32-aligned byte grid (4 digits per table lookup) and decoded once: formatting
    millions of ids one Python str at a time dominated the simulator's run time.
    """
    n = values.size
    grid = np.zeros((n, 2 + _N_QUADS), dtype=np.uint32)
    grid.view(np.uint8)[:, 0] = prefix
    rest = values.copy()
    for k in range(_N_QUADS):
        quad = rest % _QUAD
        above = rest // _QUAD
        block = np.where(above == 0, 1, 0)
        if k:
            block[rest == 0] = 2
        grid[:, _N_QUADS - k] = _QUADS[block * 10_000 + quad.astype(np.int64)]
        rest = above
    grid.view(np.uint8)[:, 4 * (1 + _N_QUADS) : 4 * (1 + _N_QUADS) + 2] = suffix
    return grid.tobytes().replace(b"\0", b"").decode("ascii")


def _render_lines(
    values: npt.NDArray[np.uint64], prefix: npt.NDArray[np.uint8], suffix: npt.NDArray[np.uint8]
) -> list[str]:
    """``_render`` split on its "\\n" suffixes, in chunks small enough for malloc to recycle memory."""
    out: list[str] = []
    carry = ""  # a line cut by the chunk boundary continues in the next chunk
    for lo in range(0, values.size, _RENDER_CHUNK):
        hi = lo + _RENDER_CHUNK
        lines = (carry + _render(values[lo:hi], prefix[lo:hi], suffix[lo:hi])).split("\n")
        carry = lines.pop()
        out.extend(lines)
    if carry:
        raise ValueError("rendered text must end with a newline suffix")
    return out


def _id_strings(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.object_]:
    n = ids.size
    suffix = np.zeros((n, 2), dtype=np.uint8)
    suffix[:, 0] = ord("\n")
    return np.array(_render_lines(ids, np.zeros(n, dtype=np.uint8), suffix), dtype=object)


def _datetime_strings(epoch_seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """Format seconds as 'YYYY-MM-DD HH:MM:SS', formatting each distinct second once."""
    if epoch_seconds.size == 0:
        return np.empty(0, dtype=object)
    lo = int(epoch_seconds.min())
    span = np.arange(lo, int(epoch_seconds.max()) + 1, dtype=np.int64)
    iso = np.datetime_as_string(span.astype("datetime64[s]"), unit="s")
    table = np.strings.replace(iso, "T", " ").astype(object)
    # Fancy-indexing an object array shares the string objects, so a million hits cost pointers only.
    out: npt.NDArray[np.object_] = table[epoch_seconds - lo]
    return out


def _array_strings(values: npt.NDArray[np.uint64], counts: npt.NDArray[np.int64]) -> list[str]:
    """Render consecutive runs of ``values`` (run lengths ``counts``, each >= 1) as '[a,b,c]'."""
    if counts.size == 0:
        return []
    if counts.min() < 1:
        raise ValueError("every visit lists at least its first hit")
    ends = np.cumsum(counts)
    prefix = np.zeros(values.size, dtype=np.uint8)
    prefix[ends - counts] = ord("[")
    suffix = np.zeros((values.size, 2), dtype=np.uint8)
    suffix[:, 0] = ord(",")
    suffix[ends - 1, 0] = ord("]")
    suffix[ends - 1, 1] = ord("\n")
    return _render_lines(values, prefix, suffix)


def simulate_day(counter: int, day: datetime.date, n_visits: int | None = None, seed: int = 0) -> Day:
    """Simulate one day of visits and hits for ``counter``; deterministic per (counter, day, seed)."""
    if n_visits is None:
        n_visits = default_visits(counter, day, seed)
    if n_visits < 0:
        raise ValueError(f"n_visits must be >= 0, got {n_visits}")
    rng = _rng(counter, day, seed, 0)
    n = n_visits

    level = rng.choice(N_LEVELS, size=n, p=_LEVEL_P).astype(np.int64)
    device = rng.choice(4, size=n, p=_DEVICE_P).astype(np.int64) + 1
    mobile = (device == 2) | (device == 3)

    # Per-visit lognormal "temperament" noise makes neighbouring levels overlap.
    activity = rng.lognormal(0.0, 0.45, n)
    extra = rng.poisson(_EXTRA_HITS[level] * activity * np.where(mobile, 1.3, 1.0))
    # A thin heavy tail of very long sessions exercises the 500-id cap on watchIDs.
    heavy = (level == 5) & (rng.random(n) < 0.002)
    extra = np.where(heavy, rng.integers(450, 900, n), extra)
    n_hits = np.minimum(1 + extra, MAX_HITS_PER_VISIT).astype(np.int64)

    # A modelling choice, so the two device classes need their own models: mobile visits have
    # shorter and less regular pauses than desktop ones.
    shape = _GAP_SHAPE[level] * np.where(mobile, 0.8, 1.0) * rng.lognormal(0.0, 0.3, n)
    mean_gap = _GAP_MEAN[level] * np.where(mobile, 0.6, 1.0) * rng.lognormal(0.0, 0.4, n)
    tail = rng.exponential(_TAIL_MEAN[level] * np.where(mobile, 0.7, 1.0))

    total = int(n_hits.sum())
    visit_of_hit = np.repeat(np.arange(n), n_hits)
    first = np.zeros(total, dtype=bool)
    starts = np.cumsum(n_hits) - n_hits
    first[starts] = True
    hit_shape = shape[visit_of_hit]
    gaps = rng.gamma(hit_shape, mean_gap[visit_of_hit] / hit_shape)
    gaps = np.where(first, 0.0, np.maximum(np.round(gaps), 1.0)).astype(np.int64)
    csum = np.cumsum(gaps)
    offset = csum - (csum[starts] - gaps[starts])[visit_of_hit]
    last_offset = offset[starts + n_hits - 1]
    duration = (last_offset + np.round(tail)).astype(np.int64)

    day_start = int((np.datetime64(day.isoformat(), "s") - np.datetime64(0, "s")).astype(np.int64))
    visit_start = day_start + rng.integers(0, 86400, n)
    hit_time = visit_start[visit_of_hit] + offset

    is_pv = np.where(
        first,
        True,
        rng.random(total) < _PAGEVIEW_P[level][visit_of_hit] * np.where(mobile[visit_of_hit], 0.75, 1.0),
    )
    page_views = np.bincount(visit_of_hit, weights=is_pv, minlength=n).astype(np.int64)
    bounce = ((page_views <= 1) & (duration < 15)).astype(np.int64)
    is_new = (rng.random(n) < _NEW_USER_P[level]).astype(np.int64)

    visit_ids = _ids(rng, n)
    watch_ids = _ids(rng, total)
    # Returning users: ~80 % distinct clients, so some clients have several visits in a day.
    n_clients = max(1, int(n * 0.8))
    client_str = _id_strings(_ids(rng, n_clients))
    visit_client = rng.integers(0, n_clients, n)

    host = f"https://shop{counter}.example.ru"
    url_pool = np.array([host + p for p in _PATHS], dtype=object)
    hit_url = rng.choice(len(_PATHS), size=total, p=_PATH_P)
    device_str = np.array(["1", "2", "3", "4"], dtype=object)

    # watchIDs: hits in time order, capped at 500, with a small fraction silently missing
    # ("events are not necessarily recorded in the watchID field"); the first hit is always there.
    rank = np.arange(total) - starts[visit_of_hit]
    listed = (rank < WATCH_IDS_CAP) & (first | (rng.random(total) >= _UNLISTED_P))
    listed_counts = np.bincount(visit_of_hit[listed], minlength=n).astype(np.int64)
    watch_lists = _array_strings(watch_ids[listed], listed_counts)

    visits = pd.DataFrame(
        {
            "ym:s:visitID": pd.Series(_id_strings(visit_ids), dtype=str),
            "ym:s:counterID": np.full(n, counter, dtype=np.int64),
            "ym:s:watchIDs": pd.Series(watch_lists, dtype=str),
            "ym:s:dateTime": pd.Series(_datetime_strings(visit_start), dtype=str),
            "ym:s:clientID": pd.Series(client_str[visit_client], dtype=str),
            "ym:s:visitDuration": duration,
            "ym:s:pageViews": page_views,
            "ym:s:bounce": bounce,
            "ym:s:deviceCategory": pd.Series(device_str[device - 1], dtype=str),
            "ym:s:isNewUser": is_new,
            "ym:s:startURL": pd.Series(url_pool[hit_url[starts]], dtype=str),
        },
        columns=VISIT_FIELDS,
    )

    # The two logs never join perfectly: a few listed hits are absent from the hits export, and
    # a few exported hits belong to no visit of the day (e.g. sessions that started the day before).
    exported = np.flatnonzero(first | (rng.random(total) >= _UNEXPORTED_P))
    n_orphans = int(total * _ORPHAN_P)
    orphan_ids = _ids(rng, n_orphans)
    orphan_time = day_start + rng.integers(0, 86400, n_orphans)
    orphan_client = rng.integers(0, n_clients, n_orphans)
    orphan_device = rng.choice(4, size=n_orphans, p=_DEVICE_P) + 1
    orphan_url = rng.choice(len(_PATHS), size=n_orphans, p=_PATH_P)
    hit_visit = visit_of_hit[exported]
    all_ids = np.concatenate([watch_ids[exported], orphan_ids])
    all_time = np.concatenate([hit_time[exported], orphan_time])
    all_client = np.concatenate([visit_client[hit_visit], orphan_client])
    all_device = np.concatenate([device[hit_visit], orphan_device])
    all_url = np.concatenate([hit_url[exported], orphan_url])
    all_pv = np.concatenate([is_pv[exported], np.ones(n_orphans, dtype=bool)])

    # Real hit logs are not grouped by visit.  Shuffle the numbers, then format: formatting first
    # and shuffling millions of Python strings is several times slower (cache misses).
    order = rng.permutation(all_ids.size)
    hits = pd.DataFrame(
        {
            "ym:pv:watchID": pd.Series(_id_strings(all_ids[order]), dtype=str),
            "ym:pv:counterID": np.full(all_ids.size, counter, dtype=np.int64),
            "ym:pv:clientID": pd.Series(client_str[all_client[order]], dtype=str),
            "ym:pv:dateTime": pd.Series(_datetime_strings(all_time[order]), dtype=str),
            "ym:pv:URL": pd.Series(url_pool[all_url[order]], dtype=str),
            "ym:pv:isPageView": all_pv[order].astype(np.int64),
            "ym:pv:deviceCategory": pd.Series(device_str[all_device[order] - 1], dtype=str),
        },
        columns=HIT_FIELDS,
    )
    return Day(visits=visits, hits=hits, level=level)


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f"}
_WRITE_CHUNK = 100_000


def escape_value(text: str) -> str:
    """ClickHouse TSV escaping of one String value."""
    for raw, esc in _ESCAPES.items():  # backslash first, so later escapes are not doubled
        text = text.replace(raw, esc)
    return text


def _text_column(column: pd.Series) -> npt.NDArray[np.object_]:
    """The column's values as TSV field text (object array of str)."""
    if pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        # Few distinct values in most int columns: format each once, then share the strings.
        codes, uniques = pd.factorize(column.astype(np.int64) if column.dtype == bool else column)
        table = np.array([str(u) for u in np.asarray(uniques).tolist()], dtype=object)
        out: npt.NDArray[np.object_] = table[codes]
        return out
    missing = pd.isna(column).to_numpy()
    values = column.to_numpy(dtype=object)
    if not isinstance(column.dtype, pd.StringDtype):
        values = np.array([v if isinstance(v, str) else str(v) for v in values.tolist()], dtype=object)
    if missing.any():
        values = values.copy()
        values[missing] = ""
    joined = "".join(values.tolist())
    if any(ch in joined for ch in _ESCAPES):
        text_codes, text_uniques = pd.factorize(values)
        escaped = np.array([escape_value(u) for u in text_uniques.tolist()], dtype=object)
        values = escaped[text_codes]
    if missing.any():
        values[missing] = "\\N"  # ClickHouse's NULL marker
    return values


def write_tsv(frame: pd.DataFrame, fields: list[str], out: IO[str]) -> None:
    """Write ``frame[fields]`` as ClickHouse TabSeparatedWithNames, as the Logs API download serves it."""
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise KeyError(f"frame lacks fields {missing}")
    out.write("\t".join(fields) + "\n")
    n = len(frame)
    if n == 0 or not fields:
        return
    columns = [_text_column(frame[name]) for name in fields]
    width = 2 * len(fields)
    for lo in range(0, n, _WRITE_CHUNK):
        hi = min(n, lo + _WRITE_CHUNK)
        # Row-major token grid "v1 \t v2 \t ... vk \n" joined by one C call per chunk.
        tokens = np.full((hi - lo, width), "\t", dtype=object)
        for j, col in enumerate(columns):
            tokens[:, 2 * j] = col[lo:hi]
        tokens[:, -1] = "\n"
        out.write("".join(tokens.ravel().tolist()))
