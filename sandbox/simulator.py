"""Seeded simulator of one day of Yandex Metrika Logs API data (visits + hits) with ground truth.

Every visit carries a latent engagement level 0..5; the level shapes how many hits the visit has,
how the pauses between them look, its duration, bounce and page views.  The frames hold values in
the shape the Logs API TSV shows them (ids as decimal strings, ``watchIDs`` as ``"[1,2,3]"``), so
``write_tsv`` can emit files that are byte-compatible with a real export.

This is family A of the training simulators: ``Params`` holds its knobs (engagement and device mix,
hit counts, pause shapes and scales, visit duration, page views, bounce rule, hit losses) and
``member(k)`` draws the k-th member of the family.  ``DEFAULT`` is the sandbox's day, which
``simulate_day`` reproduces exactly when given no ``params``.  Family B (``sandbox.renewal``) is a
structurally different generator that renders its days through ``assemble`` here.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace
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
DEFAULT_VISITS = 3000
N_LEVELS = 6


@dataclass(frozen=True)
class Params:
    """Knobs of family A, one value per day.  Per-level tuples are indexed by level 0..5."""

    # Skewed: level 4+ is ~15 % of visits.
    level_p: tuple[float, ...] = (0.28, 0.22, 0.20, 0.15, 0.10, 0.05)
    # deviceCategory codes: 1 desktop, 2 phone, 3 tablet, 4 TV.
    device_p: tuple[float, ...] = (0.52, 0.38, 0.08, 0.02)
    # Mean extra hits beyond the first, and the lognormal sigma of a visit's "temperament" that
    # makes neighbouring levels overlap; mobile visits have `mobile_hits` times as many.
    extra_hits: tuple[float, ...] = (0.12, 0.9, 2.4, 4.5, 9.0, 16.0)
    activity_sigma: float = 0.45
    mobile_hits: float = 1.3
    heavy_p: float = 0.002  # level-5 visits with 450-900 hits (exercise the 500-id cap)
    # Pauses between hits: `gap_dist` ("gamma", "lognormal" or "weibull") with the regularity of a
    # gamma of this shape (coefficient of variation 1/sqrt(shape)) and this mean (seconds), each with
    # per-visit lognormal noise; mobile pauses are shorter and less regular.
    gap_dist: str = "gamma"
    gap_shape: tuple[float, ...] = (0.5, 0.7, 0.9, 1.3, 2.6, 3.4)
    gap_mean: tuple[float, ...] = (6.0, 10.0, 16.0, 24.0, 34.0, 40.0)
    shape_sigma: float = 0.3
    gap_sigma: float = 0.4
    mobile_shape: float = 0.8
    mobile_gap: float = 0.6
    # visitDuration: last hit's offset + an exponential tail of this mean, then lognormal jitter.
    tail_mean: tuple[float, ...] = (3.0, 9.0, 20.0, 32.0, 50.0, 60.0)
    mobile_tail: float = 0.7
    duration_sigma: float = 0.0
    # Share of hits after the first that are page views.
    pageview_p: tuple[float, ...] = (0.75, 0.65, 0.55, 0.5, 0.45, 0.42)
    mobile_pageview: float = 0.75
    # bounce: at most one page view and a duration under `bounce_seconds`; then flipped at random.
    bounce_seconds: int = 15
    bounce_flip: float = 0.0
    new_user_p: tuple[float, ...] = (0.75, 0.7, 0.6, 0.5, 0.4, 0.35)
    # Shares of hits missing from watchIDs, listed but not exported, and exported for no visit of the day.
    unlisted_p: float = 0.005
    unexported_p: float = 0.002
    orphan_p: float = 0.003


DEFAULT = Params()
GAP_DISTS = ("gamma", "lognormal", "weibull")
_FAMILY = 0xA


def member(k: int) -> Params:
    """The k-th member of family A: every knob drawn around DEFAULT (k's draws are fixed)."""
    rng = np.random.default_rng(np.random.SeedSequence([_FAMILY, k]))
    d = DEFAULT
    return replace(
        d,
        level_p=level_mix(rng, np.array(d.level_p)),
        device_p=device_mix(rng),
        extra_hits=_per_level(rng, d.extra_hits, rng.uniform(0.9, 1.12), 0.05),
        activity_sigma=rng.uniform(0.35, 0.55),
        mobile_hits=rng.uniform(1.1, 1.45),
        gap_dist=str(rng.choice(GAP_DISTS)),
        gap_shape=_shapes(rng, d.gap_shape),
        gap_mean=_per_level(rng, d.gap_mean, rng.uniform(0.8, 1.25), 0.05),
        shape_sigma=rng.uniform(0.2, 0.4),
        gap_sigma=rng.uniform(0.3, 0.5),
        mobile_shape=rng.uniform(0.7, 1.0),
        mobile_gap=rng.uniform(0.5, 0.8),
        tail_mean=_per_level(rng, d.tail_mean, rng.uniform(0.7, 1.4), 0.1),
        mobile_tail=rng.uniform(0.5, 0.9),
        duration_sigma=rng.uniform(0.0, 0.3),
        pageview_p=tuple(float(p) for p in np.minimum(np.array(d.pageview_p) * rng.uniform(0.6, 1.3), 0.95)),
        mobile_pageview=rng.uniform(0.6, 1.0),
        bounce_seconds=int(rng.integers(10, 31)),
        bounce_flip=rng.uniform(0.0, 0.03),
        unlisted_p=log_uniform(rng, 0.001, 0.08),
        unexported_p=log_uniform(rng, 0.001, 0.08),
        orphan_p=log_uniform(rng, 0.001, 0.05),
    )


def level_mix(rng: np.random.Generator, around: npt.NDArray[np.float64]) -> tuple[float, ...]:
    """Level shares: ``around`` tilted towards (or away from) the engaged levels by exp(beta * level),
    beta in -0.3..0.45, with a little Dirichlet noise: level 4+ takes about 5-43 % of visits."""
    tilted = around * np.exp(rng.uniform(-0.3, 0.45) * np.arange(around.size))
    return tuple(float(p) for p in rng.dirichlet(tilted / tilted.sum() * 200))


def device_mix(rng: np.random.Generator) -> tuple[float, ...]:
    """deviceCategory shares 1-4: mobile (phone + tablet) 15-85 %, TV up to 4 %."""
    mobile = rng.uniform(0.15, 0.85)
    tablet = rng.uniform(0.05, 0.3)
    tv = rng.uniform(0.0, 0.04)
    return (1 - mobile - tv, mobile * (1 - tablet), mobile * tablet, tv)


def _per_level(
    rng: np.random.Generator, base: tuple[float, ...], scale: float, sigma: float
) -> tuple[float, ...]:
    """``base`` times ``scale``, each level jittered by lognormal ``sigma``, each level still at
    least 15 % above the one below (so no two levels look alike)."""
    values = np.array(base) * scale * rng.lognormal(0.0, sigma, len(base))
    for i in range(1, values.size):
        values[i] = max(values[i], values[i - 1] * 1.15)
    return tuple(float(v) for v in values)


def _shapes(rng: np.random.Generator, base: tuple[float, ...]) -> tuple[float, ...]:
    """Pause regularity by level: from flat (slope 0) to DEFAULT's rise with the level (slope 1, in
    log space), around a drawn overall regularity."""
    log_base = np.log(np.array(base))
    centre = log_base.mean() + rng.normal(0.0, 0.3)
    values = np.exp(centre + rng.uniform(0.0, 1.0) * (log_base - log_base.mean()))
    return tuple(float(v) for v in values)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


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


def simulate_day(
    counter: int, day: datetime.date, n_visits: int | None = None, seed: int = 0, params: Params = DEFAULT
) -> Day:
    """Simulate one day of visits and hits for ``counter``; deterministic per (counter, day, seed, params)."""
    if n_visits is None:
        n_visits = default_visits(counter, day, seed)
    if n_visits < 0:
        raise ValueError(f"n_visits must be >= 0, got {n_visits}")
    rng = _rng(counter, day, seed, 0)
    noise = _rng(counter, day, seed, 2)  # draws DEFAULT does not make, so its days stay as they were
    n = n_visits
    p = params

    level = rng.choice(N_LEVELS, size=n, p=np.array(p.level_p)).astype(np.int64)
    device = rng.choice(4, size=n, p=np.array(p.device_p)).astype(np.int64) + 1
    mobile = (device == 2) | (device == 3)

    # Per-visit lognormal "temperament" noise makes neighbouring levels overlap.
    activity = rng.lognormal(0.0, p.activity_sigma, n)
    extra = rng.poisson(np.array(p.extra_hits)[level] * activity * np.where(mobile, p.mobile_hits, 1.0))
    # A thin heavy tail of very long sessions exercises the 500-id cap on watchIDs.
    heavy = (level == 5) & (rng.random(n) < p.heavy_p)
    extra = np.where(heavy, rng.integers(450, 900, n), extra)
    n_hits = np.minimum(1 + extra, MAX_HITS_PER_VISIT).astype(np.int64)

    # A modelling choice, so the two device classes need their own models: mobile visits have
    # shorter and less regular pauses than desktop ones.
    shape = (
        np.array(p.gap_shape)[level]
        * np.where(mobile, p.mobile_shape, 1.0)
        * rng.lognormal(0.0, p.shape_sigma, n)
    )
    mean_gap = (
        np.array(p.gap_mean)[level] * np.where(mobile, p.mobile_gap, 1.0) * rng.lognormal(0.0, p.gap_sigma, n)
    )
    tail = rng.exponential(np.array(p.tail_mean)[level] * np.where(mobile, p.mobile_tail, 1.0))

    total = int(n_hits.sum())
    visit_of_hit = np.repeat(np.arange(n), n_hits)
    first = np.zeros(total, dtype=bool)
    starts = np.cumsum(n_hits) - n_hits
    first[starts] = True
    gaps = _gaps(rng, p.gap_dist, shape, mean_gap, visit_of_hit)
    gaps = np.where(first, 0.0, np.maximum(np.round(gaps), 1.0)).astype(np.int64)
    csum = np.cumsum(gaps)
    offset = csum - (csum[starts] - gaps[starts])[visit_of_hit]
    last_offset = offset[starts + n_hits - 1]
    duration = (last_offset + np.round(tail)).astype(np.int64)
    if p.duration_sigma > 0:
        jitter = noise.lognormal(0.0, p.duration_sigma, n)
        duration = np.maximum(np.round(duration * jitter), last_offset).astype(np.int64)

    day_start = int((np.datetime64(day.isoformat(), "s") - np.datetime64(0, "s")).astype(np.int64))
    visit_start = day_start + rng.integers(0, 86400, n)

    pageview_p = np.array(p.pageview_p)[level][visit_of_hit]
    is_pv = np.where(
        first, True, rng.random(total) < pageview_p * np.where(mobile[visit_of_hit], p.mobile_pageview, 1.0)
    )
    page_views = np.bincount(visit_of_hit, weights=is_pv, minlength=n).astype(np.int64)
    bounce = (page_views <= 1) & (duration < p.bounce_seconds)
    if p.bounce_flip > 0:
        bounce ^= noise.random(n) < p.bounce_flip
    is_new = rng.random(n) < np.array(p.new_user_p)[level]
    visits = Latent(
        level=level,
        device=device,
        start=visit_start,
        duration=duration,
        page_views=page_views,
        bounce=bounce,
        is_new=is_new,
        n_hits=n_hits,
        offset=offset,
        is_pv=is_pv,
    )
    return assemble(rng, counter, day, visits, Losses(p.unlisted_p, p.unexported_p, p.orphan_p, p.device_p))


def _gaps(
    rng: np.random.Generator,
    dist: str,
    shape: npt.NDArray[np.float64],
    mean: npt.NDArray[np.float64],
    visit_of_hit: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """One pause per hit, of its visit's mean, as regular as a gamma of its visit's shape
    (coefficient of variation 1/sqrt(shape))."""
    if dist == "gamma":
        hit_shape = shape[visit_of_hit]
        out: npt.NDArray[np.float64] = rng.gamma(hit_shape, mean[visit_of_hit] / hit_shape)
    elif dist == "lognormal":
        sigma = np.sqrt(np.log1p(1.0 / shape))[visit_of_hit]
        out = mean[visit_of_hit] * rng.lognormal(-sigma * sigma / 2, sigma)
    elif dist == "weibull":
        k = shape**0.543  # the CV of a Weibull of shape k is about k**-1.086
        scale = mean / np.vectorize(math.gamma, otypes=[np.float64])(1.0 + 1.0 / k)
        out = scale[visit_of_hit] * rng.weibull(k[visit_of_hit])
    else:
        raise ValueError(f"unknown pause distribution {dist!r}")
    return out


@dataclass(frozen=True)
class Latent:
    """A day's visits as a generator made them, before ids, text and hit losses."""

    level: npt.NDArray[np.int64]  # ground truth 0..5
    device: npt.NDArray[np.int64]  # deviceCategory 1..4
    start: npt.NDArray[np.int64]  # visit start, epoch seconds
    duration: npt.NDArray[np.int64]  # ym:s:visitDuration
    page_views: npt.NDArray[np.int64]
    bounce: npt.NDArray[np.bool_]
    is_new: npt.NDArray[np.bool_]
    n_hits: npt.NDArray[np.int64]  # >= 1 per visit; hits below are grouped by visit, in time order
    offset: npt.NDArray[np.int64]  # each hit's seconds since its visit's start (0 for the first)
    is_pv: npt.NDArray[np.bool_]  # each hit's ym:pv:isPageView (True for the first)


@dataclass(frozen=True)
class Losses:
    """How the two logs fail to join: shares of hits (never a visit's first) missing from watchIDs,
    listed but not exported, and exported for no visit of the day; ``drop_listed``/``drop_exported``
    (one flag per hit) add a generator's own losses."""

    unlisted_p: float
    unexported_p: float
    orphan_p: float
    device_p: tuple[float, ...]  # the orphans' device mix
    drop_listed: npt.NDArray[np.bool_] | None = None
    drop_exported: npt.NDArray[np.bool_] | None = None


def assemble(rng: np.random.Generator, counter: int, day: datetime.date, v: Latent, losses: Losses) -> Day:
    """Ids, clients, URLs, watchIDs lists and the hits export of ``v``, as the Logs API shows them."""
    n = v.level.size
    n_hits = v.n_hits
    total = int(n_hits.sum())
    visit_of_hit = np.repeat(np.arange(n), n_hits)
    starts = np.cumsum(n_hits) - n_hits
    first = np.zeros(total, dtype=bool)
    first[starts] = True
    day_start = int((np.datetime64(day.isoformat(), "s") - np.datetime64(0, "s")).astype(np.int64))
    hit_time = v.start[visit_of_hit] + v.offset

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
    listed = (rank < WATCH_IDS_CAP) & (first | (rng.random(total) >= losses.unlisted_p))
    if losses.drop_listed is not None:
        listed &= first | ~losses.drop_listed
    listed_counts = np.bincount(visit_of_hit[listed], minlength=n).astype(np.int64)
    watch_lists = _array_strings(watch_ids[listed], listed_counts)

    visits = pd.DataFrame(
        {
            "ym:s:visitID": pd.Series(_id_strings(visit_ids), dtype=str),
            "ym:s:counterID": np.full(n, counter, dtype=np.int64),
            "ym:s:watchIDs": pd.Series(watch_lists, dtype=str),
            "ym:s:dateTime": pd.Series(_datetime_strings(v.start), dtype=str),
            "ym:s:clientID": pd.Series(client_str[visit_client], dtype=str),
            "ym:s:visitDuration": v.duration.astype(np.int64),
            "ym:s:pageViews": v.page_views.astype(np.int64),
            "ym:s:bounce": v.bounce.astype(np.int64),
            "ym:s:deviceCategory": pd.Series(device_str[v.device - 1], dtype=str),
            "ym:s:isNewUser": v.is_new.astype(np.int64),
            "ym:s:startURL": pd.Series(url_pool[hit_url[starts]], dtype=str),
        },
        columns=VISIT_FIELDS,
    )

    # The two logs never join perfectly: a few listed hits are absent from the hits export, and
    # a few exported hits belong to no visit of the day (e.g. sessions that started the day before).
    kept = first | (rng.random(total) >= losses.unexported_p)
    if losses.drop_exported is not None:
        kept &= first | ~losses.drop_exported
    exported = np.flatnonzero(kept)
    n_orphans = int(total * losses.orphan_p)
    orphan_ids = _ids(rng, n_orphans)
    orphan_time = day_start + rng.integers(0, 86400, n_orphans)
    orphan_client = rng.integers(0, n_clients, n_orphans)
    orphan_device = rng.choice(4, size=n_orphans, p=np.array(losses.device_p)) + 1
    orphan_url = rng.choice(len(_PATHS), size=n_orphans, p=_PATH_P)
    hit_visit = visit_of_hit[exported]
    all_ids = np.concatenate([watch_ids[exported], orphan_ids])
    all_time = np.concatenate([hit_time[exported], orphan_time])
    all_client = np.concatenate([visit_client[hit_visit], orphan_client])
    all_device = np.concatenate([v.device[hit_visit], orphan_device])
    all_url = np.concatenate([hit_url[exported], orphan_url])
    all_pv = np.concatenate([v.is_pv[exported], np.ones(n_orphans, dtype=bool)])

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
    return Day(visits=visits, hits=hits, level=v.level)


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
