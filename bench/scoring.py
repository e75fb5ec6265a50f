"""Benchmark the scoring path on a large simulated day.

    python bench/scoring.py [--visits 1000000] [--sample 20000] [--rounds 3] [--keep DIR]

Generates the visits and hits (in parts, as the Logs API serves a big day), writes them as TSV,
then times: reading the TSVs (scorer.tsv), features + scoring (scorer.scoring, vectorised), and a
straightforward per-visit Python implementation of the same features (the baseline), run on a
sample and extrapolated per visit.  Asserts that the baseline and the vectorised code agree on the
sample, and prints peak RSS.  This machine's speed drifts within minutes, so the vectorised run and the
baseline alternate for a few rounds and the medians are compared (the first round also pays the one-off
compilation of the models).

The headline speedup compares like with like: (baseline features + scoring) / (vectorised features +
scoring), the baseline scored by the very same vectorised model call, whose measured time is added to
both sides.  Both start from the same frames scorer.tsv returns (hits' watchID as uint64, dateTime as
datetime64[s]; visits as text); the baseline turns the columns into Python values once (.tolist()),
then works one visit at a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/scoring.py`
    sys.path.insert(0, str(ROOT))

from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, simulate_day, write_tsv  # noqa: E402
from scorer import model, scoring, tsv  # noqa: E402
from scorer.features import FEATURES, SLOT_SECONDS, build_features  # noqa: E402

COUNTER = 777
DAY = dt.date(2024, 9, 2)
VISITS_PER_PART = 125_000
TARGET_SPEEDUP = 50.0
TARGET_READ_RATIO = 2.0
TARGET_RSS_GB = 2.0


def generate(out_dir: Path, n_visits: int) -> np.ndarray:
    """Write visits_<i>.tsv / hits_<i>.tsv parts; return the ground-truth level of every visit in order.

    Generated part by part so the generator's own frames never hold the whole day at once.
    """
    levels = []
    for part, lo in enumerate(range(0, n_visits, VISITS_PER_PART)):
        day = simulate_day(COUNTER, DAY, n_visits=min(VISITS_PER_PART, n_visits - lo), seed=part)
        with open(out_dir / f"visits_{part}.tsv", "w", encoding="utf-8", newline="") as fh:
            write_tsv(day.visits, VISIT_FIELDS, fh)
        with open(out_dir / f"hits_{part}.tsv", "w", encoding="utf-8", newline="") as fh:
            write_tsv(day.hits, HIT_FIELDS, fh)
        levels.append(day.level)
        del day
    return np.concatenate(levels)


def baseline_index(hits: pd.DataFrame) -> dict[int, dt.datetime]:
    """watchID -> hit time, first occurrence wins (as the vectorised join does)."""
    index: dict[int, dt.datetime] = {}
    watch_ids = hits["ym:pv:watchID"].to_numpy().tolist()  # uint64 -> int, datetime64[s] -> datetime
    times = hits["ym:pv:dateTime"].to_numpy().tolist()
    for watch_id, when in zip(watch_ids, times, strict=True):
        index.setdefault(watch_id, when)
    return index


def baseline_features(visits: pd.DataFrame, index: dict[int, dt.datetime]) -> pd.DataFrame:
    """The same features, one visit at a time, the way one would first write it."""
    rows = []
    for watch_ids, start_text, duration, page_views, bounce, device in zip(
        visits["ym:s:watchIDs"].tolist(),
        visits["ym:s:dateTime"].tolist(),
        visits["ym:s:visitDuration"].tolist(),
        visits["ym:s:pageViews"].tolist(),
        visits["ym:s:bounce"].tolist(),
        visits["ym:s:deviceCategory"].tolist(),
        strict=True,
    ):
        start = dt.datetime.strptime(start_text, "%Y-%m-%d %H:%M:%S")
        listed = [w for w in watch_ids.strip("[]").split(",") if w]
        offsets = []
        for watch_id in listed:
            when = index.get(int(watch_id))
            if when is not None:
                seconds = (when - start).total_seconds()
                offsets.append(max(0, int(seconds)))
        offsets.sort()
        slots = [o // SLOT_SECONDS for o in offsets]
        pauses = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
        n_hits = len(offsets)
        active = len(set(slots))
        slot_range = slots[-1] - slots[0] + 1 if slots else 0
        code = int(device) if device in ("1", "2", "3", "4") else 0
        rows.append(
            {
                "hits": n_hits,
                "watch_ids": len(listed),
                "active_slots": active,
                "slot_range": slot_range,
                "slot_density": active / slot_range if slot_range else 0.0,
                "hits_per_slot": n_hits / active if active else 0.0,
                "pause_mean": statistics.fmean(pauses) if pauses else 0.0,
                "pause_max": max(pauses) if pauses else 0,
                "pause_std": statistics.pstdev(pauses) if pauses else 0.0,
                "pause_median": statistics.median(pauses) if pauses else 0.0,
                "visit_duration": duration,
                "page_views": page_views,
                "bounce": bounce,
                "is_mobile": 1 if code in (2, 3) else 0,
                "device_category": code,
            }
        )
    return pd.DataFrame(rows, index=visits.index, columns=list(FEATURES)).astype(np.float64)


def _mark(marks: dict[str, tuple[float, float]], stage: str) -> None:
    marks.setdefault(stage, (time.perf_counter(), time.process_time()))


def _each(runs: list[dict[str, float]], key: str, spec: str) -> str:
    return ", ".join(format(run[key], spec) for run in runs)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="visits for the per-visit baseline")
    parser.add_argument("--rounds", type=int, default=3, help="vectorised runs, each next to a baseline run")
    parser.add_argument(
        "--keep", type=Path, help="keep the TSVs in this directory, and reuse them if already there"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        truth = out_dir / f"levels_{args.visits}.npy"
        if args.keep and truth.exists():
            levels = np.load(truth)
        else:
            for old in out_dir.glob("*.tsv"):
                old.unlink()
            levels = generate(out_dir, args.visits)
            np.save(truth, levels)
        generate_s = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in out_dir.glob("*.tsv")) / 1e6
        models = model.load_models()

        started = time.perf_counter()
        visit_paths, hit_paths = tsv.find_parts(out_dir)
        visits = tsv.read_visits(visit_paths)
        hits = tsv.read_hits(hit_paths)
        read_s = time.perf_counter() - started

        load_before = os.getloadavg()[0]
        sample_n = min(args.sample, len(visits))
        sample = visits.iloc[sorted(random.Random(0).sample(range(len(visits)), sample_n))]
        runs: list[dict[str, float]] = []
        index: dict[int, dt.datetime] | None = None
        for _ in range(args.rounds):
            # the vectorised path, then the baseline on the sample: each round sees the same machine
            marks: dict[str, tuple[float, float]] = {}
            started = time.perf_counter()
            result = scoring.score_visits(visits, hits, models, on_stage=functools.partial(_mark, marks))
            end, end_cpu = time.perf_counter(), time.process_time()
            run = {
                "features": marks["scoring"][0] - marks["features"][0],
                "features_cpu": marks["scoring"][1] - marks["features"][1],
                "scoring": end - marks["scoring"][0],
                "scoring_cpu": end_cpu - marks["scoring"][1],
                "total": end - started,
            }
            if index is None:
                scoring_rss = peak_rss_gb()  # before the baseline's own dict of every hit
                started = time.perf_counter()
                index = baseline_index(hits)
                index_s = time.perf_counter() - started
            started = time.perf_counter()
            expected = baseline_features(sample, index)
            run["per_visit"] = (time.perf_counter() - started) / sample_n
            run["baseline"] = index_s + run["per_visit"] * len(visits)
            # Like with like: both sides scored by the same vectorised model call.
            run["speedup"] = (run["baseline"] + run["scoring"]) / run["total"]
            runs.append(run)
        del index
        actual = build_features(sample, hits)
        assert actual.columns.tolist() == expected.columns.tolist()
        mismatch = ~np.isclose(actual.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)
        assert not mismatch.any(), f"baseline and vectorised features differ:\n{actual[mismatch.any(axis=1)]}"

        def median(key: str) -> float:
            return statistics.median(run[key] for run in runs)

        features_s, scoring_s, total_s = median("features"), median("scoring"), median("total")
        features_cpu, scoring_cpu = median("features_cpu"), median("scoring_cpu")
        per_visit_s, baseline_s, speedup = median("per_visit"), median("baseline"), median("speedup")
        features_speedup = baseline_s / features_s
        read_ratio = total_s / read_s
        # Quality on the ground truth of the very same visits (visits are read in generation order).
        positive = levels >= 4
        picked = visits["ym:s:visitID"].isin(set(result["visitId"])).to_numpy()
        precision = (picked & positive).sum() / max(1, picked.sum())
        recall = (picked & positive).sum() / max(1, positive.sum())

    print(
        f"visits {len(visits):,}, hits {len(hits):,}, "
        f"TSV {size_mb:,.0f} MB in {len(visit_paths)} visit + {len(hit_paths)} hit parts"
    )
    reused = " (reused from --keep)" if args.keep and generate_s < 1 else ""
    print(f"generate + write TSV           {generate_s:8.2f} s{reused}")
    print(f"read TSVs (scorer.tsv)         {read_s:8.2f} s")
    print(f"{args.rounds} rounds of (vectorised, baseline sample); medians below, each round in brackets")
    print(f"features (vectorised)          {features_s:8.2f} s   (CPU {features_cpu:.2f} s, all threads)")
    print(f"scoring (2 models)             {scoring_s:8.2f} s   (CPU {scoring_cpu:.2f} s, all threads)")
    print(
        f"features + scoring             {total_s:8.2f} s   ({len(result):,} level-4+ visits) "
        f"[{_each(runs, 'total', '.2f')}]"
    )
    print(
        f"baseline features, per visit   {per_visit_s * 1e6:8.1f} us  (pure-Python loop, measured on "
        f"{sample_n:,} sampled visits, extrapolated to {len(visits):,})"
    )
    print(f"baseline hit index (dict)      {index_s:8.2f} s   (once, over all hits)")
    print(f"baseline features, estimated   {baseline_s:8.2f} s")
    print(f"baseline features + scoring    {baseline_s + scoring_s:8.2f} s   (the same scoring call added)")
    print(
        f"speedup vs baseline            {speedup:8.1f} x   ((baseline features + scoring) / (features + "
        f"scoring); target >= {TARGET_SPEEDUP:.0f} x) [{_each(runs, 'speedup', '.1f')}]"
    )
    print(f"  features only                {features_speedup:8.1f} x   (baseline features / features)")
    print(f"features + scoring / read      {read_ratio:8.2f}     (target <= {TARGET_READ_RATIO:.0f})")
    print(
        f"peak RSS                       {scoring_rss:8.2f} GB  (generate, read, features, scoring; "
        f"target < {TARGET_RSS_GB:.0f} GB)"
    )
    print(f"peak RSS incl. baseline        {peak_rss_gb():8.2f} GB")
    print(f"baseline == vectorised on the sample: yes ({sample_n:,} visits x {len(FEATURES)} features)")
    print(f"level 4+ vs ground truth: precision {precision:.3f}, recall {recall:.3f}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f} when features started")
    met = speedup >= TARGET_SPEEDUP and read_ratio <= TARGET_READ_RATIO and scoring_rss < TARGET_RSS_GB
    print("targets:", "all met" if met else "NOT all met")
    return 0


# --- The scorer service end to end (issue 10, item 5) -----------------------------------------------------
# Self-contained in bench/service.py: `python bench/scoring.py --service [--visits N] [--rounds R]` runs it;
# a caller wanting the figures calls `asyncio.run(service.run(visits, rounds))` (seconds and ratios).


def service_main(argv: list[str]) -> int:
    from bench import service

    return service.main(argv)


if __name__ == "__main__":
    if "--service" in sys.argv[1:]:
        sys.exit(service_main([arg for arg in sys.argv[1:] if arg != "--service"]))
    sys.exit(main())
