"""Family B of the training simulators: a visit as a renewal process of page views and in-page events.

Structurally unlike family A (``sandbox.simulator``), so a model trained on one can be tested on the
other honestly:

* a visit goes on after each hit with a probability set by its level plus per-visit logit noise, so
  hit counts are geometric mixtures (heavy-tailed) instead of Poisson ones;
* hits are a two-state Markov chain: page views and in-page events (scrolls, clicks); a page view is
  followed by a heavy-tailed Lomax "reading" pause, an event by a short exponential one;
* phones and tablets read for less, fire more events and sometimes leave the app for minutes;
  a TV reads long and fires few events;
* ``visitDuration`` ends at the last hit unless the page sends heartbeats, which add the last pause;
* hits get lost in bursts: a window of a visit's hits missing from the export, or its watchIDs list
  cut short, rather than one hit here and there.

Levels run 0..5 as in family A, and level 4+ means highly engaged: more hits, longer reading.
The day is rendered by ``sandbox.simulator.assemble``, so its files look like family A's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from sandbox import simulator
from sandbox.simulator import MAX_HITS_PER_VISIT, N_LEVELS, Day, Latent, Losses

SESSION_TIMEOUT = 1800  # seconds: a longer pause would start a new visit
_FAMILY = 0xB


@dataclass(frozen=True)
class Params:
    """Knobs of family B, one value per day.  Per-level tuples are indexed by level 0..5."""

    level_p: tuple[float, ...] = (0.30, 0.22, 0.18, 0.14, 0.10, 0.06)
    device_p: tuple[float, ...] = (0.45, 0.44, 0.08, 0.03)
    # After each hit the visit goes on with probability sigmoid(logit[level] + N(0, sigma)).
    go_on_logit: tuple[float, ...] = (-2.2, -0.5, 0.8, 1.9, 3.0, 3.6)
    go_on_sigma: float = 0.4
    mobile_go_on: float = 0.3  # added to a phone's or tablet's logit
    # Hit types: the chance that a page view / an event is followed by an event (not a page view).
    event_after_pv: tuple[float, ...] = (0.05, 0.15, 0.3, 0.4, 0.6, 0.7)
    event_after_event: float = 0.45
    mobile_events: float = 0.15  # added to both chances on phones and tablets
    # Pauses: mean Lomax reading pause after a page view (tail index read_alpha > 1), exponential
    # pause after an event; phones and tablets read for mobile_read times as long.
    read_mean: tuple[float, ...] = (5.0, 10.0, 18.0, 30.0, 60.0, 80.0)
    read_alpha: float = 2.0
    event_mean: float = 6.0
    mobile_read: float = 0.6
    switch_p: float = 0.04  # a phone's or tablet's pause is an app switch of ~switch_mean s
    switch_mean: float = 150.0
    heartbeat_p: float = 0.6  # share of visits whose duration includes the pause after the last hit
    bounce_seconds: int = 15
    bounce_flip: float = 0.0
    new_user_p: tuple[float, ...] = (0.8, 0.7, 0.6, 0.45, 0.35, 0.3)
    # Losses: visits with a burst of hits missing from the export; visits whose watchIDs stop early;
    # single hits missing from watchIDs / the export; hits exported for no visit of the day.
    burst_p: float = 0.03
    cut_p: float = 0.02
    unlisted_p: float = 0.001
    unexported_p: float = 0.001
    orphan_p: float = 0.01


DEFAULT = Params()


def member(k: int) -> Params:
    """The k-th member of family B: every knob drawn around DEFAULT (k's draws are fixed)."""
    rng = np.random.default_rng(np.random.SeedSequence([_FAMILY, k]))
    d = DEFAULT
    logit = np.sort(np.array(d.go_on_logit) + rng.uniform(-0.3, 0.3) + rng.normal(0.0, 0.1, N_LEVELS))
    event = np.clip(np.array(d.event_after_pv) + rng.uniform(-0.1, 0.2), 0.02, 0.9)
    return replace(
        d,
        level_p=simulator.level_mix(rng, np.array(d.level_p)),
        device_p=simulator.device_mix(rng),
        go_on_logit=tuple(float(x) for x in logit),
        go_on_sigma=rng.uniform(0.25, 0.5),
        mobile_go_on=rng.uniform(0.1, 0.5),
        event_after_pv=tuple(float(x) for x in event),
        event_after_event=rng.uniform(0.25, 0.65),
        mobile_events=rng.uniform(0.0, 0.25),
        read_mean=tuple(float(x) for x in np.array(d.read_mean) * rng.uniform(0.8, 1.25)),
        read_alpha=rng.uniform(1.3, 3.0),
        event_mean=rng.uniform(2.0, 12.0),
        mobile_read=rng.uniform(0.5, 0.8),
        switch_p=rng.uniform(0.0, 0.1),
        switch_mean=rng.uniform(60.0, 400.0),
        heartbeat_p=rng.uniform(0.2, 1.0),
        bounce_seconds=int(rng.integers(10, 31)),
        bounce_flip=rng.uniform(0.0, 0.03),
        burst_p=simulator.log_uniform(rng, 0.005, 0.15),
        cut_p=simulator.log_uniform(rng, 0.005, 0.1),
        unlisted_p=simulator.log_uniform(rng, 0.0005, 0.02),
        unexported_p=simulator.log_uniform(rng, 0.0005, 0.02),
        orphan_p=simulator.log_uniform(rng, 0.002, 0.05),
    )


def simulate_day(
    counter: int, day: datetime.date, n_visits: int | None = None, seed: int = 0, params: Params = DEFAULT
) -> Day:
    """Simulate one day of visits and hits for ``counter``; deterministic per (counter, day, seed, params)."""
    if n_visits is None:
        n_visits = simulator.default_visits(counter, day, seed)
    if n_visits < 0:
        raise ValueError(f"n_visits must be >= 0, got {n_visits}")
    rng = np.random.default_rng(
        np.random.SeedSequence([_FAMILY, counter & 0xFFFFFFFF, day.toordinal(), seed])
    )
    n = n_visits
    p = params

    level = rng.choice(N_LEVELS, size=n, p=np.array(p.level_p)).astype(np.int64)
    device = rng.choice(4, size=n, p=np.array(p.device_p)).astype(np.int64) + 1
    mobile = (device == 2) | (device == 3)
    tv = device == 4

    logit = np.array(p.go_on_logit)[level] + np.where(mobile, p.mobile_go_on, 0.0) - np.where(tv, 1.0, 0.0)
    go_on = 1.0 / (1.0 + np.exp(-(logit + rng.normal(0.0, p.go_on_sigma, n))))
    n_hits = np.minimum(rng.geometric(1.0 - np.minimum(go_on, 0.995)), MAX_HITS_PER_VISIT).astype(np.int64)

    total = int(n_hits.sum())
    visit_of_hit = np.repeat(np.arange(n), n_hits)
    starts = np.cumsum(n_hits) - n_hits
    extra_events = np.where(mobile, p.mobile_events, 0.0) - np.where(tv, 0.1, 0.0)
    after_pv = np.clip(np.array(p.event_after_pv)[level] + extra_events, 0.0, 0.95)
    after_event = np.clip(p.event_after_event + extra_events, 0.0, 0.95)
    is_pv = _hit_types(rng, n_hits, starts, after_pv, after_event)

    # The pause after each hit, by the hit's type; a visit's last pause is its unseen exit time.
    hit_mobile = mobile[visit_of_hit]
    read = np.array(p.read_mean)[level][visit_of_hit] * np.where(hit_mobile, p.mobile_read, 1.0)
    read *= np.where(tv[visit_of_hit], 2.0, 1.0)
    alpha = p.read_alpha
    lomax = read * (alpha - 1.0) * (rng.random(total) ** (-1.0 / alpha) - 1.0)
    pause = np.where(is_pv, lomax, rng.exponential(p.event_mean, total))
    switch = hit_mobile & (rng.random(total) < p.switch_p)
    pause = np.where(switch, pause + rng.exponential(p.switch_mean, total), pause)
    pause = np.clip(np.round(pause), 1, SESSION_TIMEOUT).astype(np.int64)

    # offset of hit i = the pauses after the visit's earlier hits
    csum = np.cumsum(pause)
    before = np.concatenate([[0], csum[:-1]]) if total else csum
    offset = before - before[starts][visit_of_hit]
    last = starts + n_hits - 1
    heartbeat = rng.random(n) < p.heartbeat_p
    duration = offset[last] + np.where(heartbeat, pause[last], 0)

    day_start = int((np.datetime64(day.isoformat(), "s") - np.datetime64(0, "s")).astype(np.int64))
    visit_start = day_start + rng.integers(0, 86400, n)
    page_views = np.bincount(visit_of_hit, weights=is_pv, minlength=n).astype(np.int64)
    bounce = (page_views <= 1) & (duration < p.bounce_seconds)
    bounce ^= rng.random(n) < p.bounce_flip
    is_new = rng.random(n) < np.array(p.new_user_p)[level]

    rank = np.arange(total) - starts[visit_of_hit]
    # A burst: a window of 20-80 % of the visit's later hits, at a random place, missing from the export.
    burst = rng.random(n) < p.burst_p
    width = np.ceil((n_hits - 1) * rng.uniform(0.2, 0.8, n)).astype(np.int64)
    from_rank = 1 + (rng.random(n) * (n_hits - width)).astype(np.int64)
    in_burst = burst[visit_of_hit] & (rank >= from_rank[visit_of_hit])
    in_burst &= rank < (from_rank + width)[visit_of_hit]
    # A cut: watchIDs stops after a random hit (the rest is exported but joins no visit).
    cut = rng.random(n) < p.cut_p
    keep = 1 + (rng.random(n) * n_hits).astype(np.int64)
    after_cut = cut[visit_of_hit] & (rank >= keep[visit_of_hit])

    latent = Latent(
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
    losses = Losses(
        p.unlisted_p, p.unexported_p, p.orphan_p, p.device_p, drop_listed=after_cut, drop_exported=in_burst
    )
    return simulator.assemble(rng, counter, day, latent, losses)


def _hit_types(
    rng: np.random.Generator,
    n_hits: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    after_pv: npt.NDArray[np.float64],
    after_event: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Page view (True) or event of each hit: a Markov chain per visit, starting with a page view."""
    n = n_hits.size
    is_pv = np.ones(int(n_hits.sum()), dtype=bool)
    u = rng.random(is_pv.size)
    longest_first = np.argsort(-n_hits, kind="stable")
    ascending = np.sort(n_hits)
    for r in range(1, int(n_hits.max(initial=1))):
        visits = longest_first[: n - int(np.searchsorted(ascending, r, side="right"))]  # n_hits > r
        idx = starts[visits] + r
        chance = np.where(is_pv[idx - 1], after_pv[visits], after_event[visits])
        is_pv[idx] = u[idx] >= chance
    return is_pv
