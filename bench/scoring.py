"""Benchmark scoring a day as whole processes, against reading the same files.

    python bench/scoring.py [--visits 1000000] [--big-visits 5000000] [--rounds 3] [--keep DIR]

Generates a simulated day as the Logs API serves a big one (visits_<i>.tsv and hits_<i>.tsv parts of
125,000 visits), then runs, as separate processes, interleaved, ``--rounds`` times each:

* the read floor: a process that only reads the same visits and hits files with pandas'
  ``read_csv(engine="pyarrow")`` (the scorer's columns, ids as text);
* the CLI: ``metrika-score score --logs-dir DIR``, the whole job, from interpreter start to the JSON
  file written.

Best of the rounds for each; the headline is their ratio (this machine's speed drifts within
minutes, so only ratios measured side by side mean anything).  Peak RSS is the CLI process's own
(``wait4``).  A second day ``--big-visits`` large is scored once to show that memory stays flat as
the day grows.  ``--pieces`` adds where the time goes inside one process (CPU seconds per piece);
``--service`` the scorer service end to end on the sandbox against the CLI (``bench/service.py``,
which needs PostgreSQL and RabbitMQ; ``python bench/service.py`` runs it alone).

Sections are functions of a ``Bench`` (the days, and what earlier sections measured) returning
``Row``s; a section is added by appending it to ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/scoring.py`
    sys.path.insert(0, str(ROOT))

from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, simulate_day, write_tsv  # noqa: E402
from scorer import tsv  # noqa: E402

COUNTER = 777
DAY = dt.date(2024, 9, 2)
VISITS_PER_PART = 125_000
TARGET_RATIO = 2.0  # CLI / read floor
GOAL_RATIO = 1.5
TARGET_RSS_GB = 1.5  # at 1M visits
TARGET_RSS_GROWTH = 1.3  # big day / 1M day

FLOOR = """
import sys
import pandas as pd
visits, hits = sys.argv[1].split(","), sys.argv[2].split(",")
rows = 0
for paths, fields, text in ((visits, {visit_fields}, {visit_text}), (hits, {hit_fields}, {hit_text})):
    for path in paths:
        frame = pd.read_csv(path, sep="\\t", engine="pyarrow", usecols=fields, dtype=dict.fromkeys(text, str))
        rows += len(frame)
print(rows)
""".format(
    visit_fields=list(tsv.VISIT_FIELDS),
    visit_text=["ym:s:visitID", "ym:s:clientID", "ym:s:watchIDs"],
    hit_fields=list(tsv.HIT_FIELDS),
    hit_text=["ym:pv:watchID"],
)


@dataclass(frozen=True)
class Run:
    seconds: float
    rss_gb: float


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Bench:
    day: Path  # the --visits day
    big_day: Path | None  # the --big-visits day, if any
    levels: np.ndarray  # ground truth of the day's visits, in file order
    rounds: int
    pieces: bool
    service: bool = False
    measured: dict[str, float] = field(default_factory=dict)  # for later sections: cli_s, floor_s, ...


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


def ensure_day(directory: Path, n_visits: int) -> np.ndarray:
    directory.mkdir(parents=True, exist_ok=True)
    truth = directory / f"levels_{n_visits}.npy"
    if truth.exists():
        return np.load(truth)
    for old in directory.glob("*.tsv"):
        old.unlink()
    levels = generate(directory, n_visits)
    np.save(truth, levels)
    return levels


def run(argv: list[str], cwd: Path) -> Run:
    """Run a process to its end: wall time and its own peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return Run(seconds, usage.ru_maxrss / 1024**2)  # Linux reports KiB


def floor_argv(day: Path) -> list[str]:
    visits, hits = tsv.find_parts(day)
    return [sys.executable, "-c", FLOOR, ",".join(map(str, visits)), ",".join(map(str, hits))]


def cli_argv(day: Path, out: Path) -> list[str]:
    command = ["score", "--date", DAY.isoformat(), "--logs-dir", str(day), "--out", str(out)]
    return [sys.executable, "-m", "scorer.cli", *command]


def _best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.seconds)


def whole_process(bench: Bench) -> list[Row]:
    """The CLI against the read floor, interleaved, best of the rounds; quality on the ground truth."""
    floors: list[Run] = []
    clis: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-out-") as tmp:
        out = Path(tmp) / "level4.json"
        run(cli_argv(bench.day, out), ROOT)  # warm: the page cache, and the compiled-model cache
        for _ in range(bench.rounds):
            floors.append(run(floor_argv(bench.day), ROOT))
            clis.append(run(cli_argv(bench.day, out), ROOT))
        picked_ids = {r["visitId"] for r in json.loads(out.read_text())}
    floor, cli = _best(floors), _best(clis)
    bench.measured.update(cli_s=cli.seconds, floor_s=floor.seconds, cli_rss_gb=max(r.rss_gb for r in clis))
    ratio = cli.seconds / floor.seconds
    visits, _ = tsv.find_parts(bench.day)
    ids = tsv.read(visits, {"ym:s:visitID": "uint64"}).column(0).to_numpy()
    picked = np.isin(ids, np.array([int(v) for v in picked_ids], dtype=np.uint64))
    positive = bench.levels >= 4
    precision = (picked & positive).sum() / max(1, picked.sum())
    recall = (picked & positive).sum() / max(1, positive.sum())
    each = ", ".join(f"{f.seconds:.2f}/{c.seconds:.2f}" for f, c in zip(floors, clis, strict=True))
    return [
        Row("read floor process (pandas, pyarrow engine)", f"{floor.seconds:.2f} s"),
        Row(
            "CLI process (metrika-score score --logs-dir)",
            f"{cli.seconds:.2f} s",
            f"rounds (floor/CLI): {each}",
        ),
        Row(
            "CLI / read floor",
            f"{ratio:.2f} x",
            f"<= {TARGET_RATIO:.1f} x (goal {GOAL_RATIO:.1f} x)",
            ratio <= TARGET_RATIO,
        ),
        Row(
            f"CLI peak RSS, {len(bench.levels):,} visits",
            f"{bench.measured['cli_rss_gb']:.2f} GB",
            f"<= {TARGET_RSS_GB:.1f} GB",
            bench.measured["cli_rss_gb"] <= TARGET_RSS_GB,
        ),
        Row("floor peak RSS", f"{max(r.rss_gb for r in floors):.2f} GB"),
        Row("level 4+ vs ground truth", f"precision {precision:.3f}, recall {recall:.3f}"),
    ]


def big_day(bench: Bench) -> list[Row]:
    """Peak RSS of the CLI on the big day against the 1M day's."""
    if bench.big_day is None:
        return []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-out-") as tmp:
        big = run(cli_argv(bench.big_day, Path(tmp) / "level4.json"), ROOT)
    growth = big.rss_gb / bench.measured["cli_rss_gb"]
    visits = int(np.load(next(bench.big_day.glob("levels_*.npy")), mmap_mode="r").shape[0])
    return [
        Row(f"CLI process, {visits:,} visits", f"{big.seconds:.2f} s"),
        Row(f"CLI peak RSS, {visits:,} visits", f"{big.rss_gb:.2f} GB"),
        Row(
            "peak RSS big day / 1M day",
            f"{growth:.2f} x",
            f"<= {TARGET_RSS_GROWTH:.1f} x",
            growth <= TARGET_RSS_GROWTH,
        ),
    ]


def pieces(bench: Bench) -> list[Row]:
    """Where the CLI's time goes, measured inside one process (--pieces)."""
    if not bench.pieces:
        return []
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("scoring_pieces.py")), str(bench.day)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [Row(*line.split("\t")) for line in out.splitlines() if "\t" in line]


def service(bench: Bench) -> list[Row]:
    """The scorer service on the sandbox, message to completed, against the CLI (--service; needs
    PostgreSQL and RabbitMQ, see bench/service.py, which prints its own stages)."""
    if not bench.service:
        return []
    from bench import service as service_bench

    figures = asyncio.run(service_bench.run(len(bench.levels), 1))  # one round: it takes minutes
    ratio = figures["ratio"]
    target = service_bench.TARGET_SERVICE_RATIO
    return [
        Row("service task, message to completed", f"{figures['service_s']:.2f} s"),
        Row("CLI on the same files (service bench)", f"{figures['cli_files_s']:.2f} s"),
        Row("service / CLI", f"{ratio:.2f} x", f"<= {target:.0f} x", ratio <= target),
    ]


SECTIONS: list[Callable[[Bench], list[Row]]] = [whole_process, big_day, pieces, service]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--big-visits", type=int, default=5_000_000, help="0 to skip the big day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pieces", action="store_true", help="also time each piece inside one process")
    parser.add_argument("--service", action="store_true", help="also the scorer service (bench/service.py)")
    parser.add_argument("--keep", type=Path, help="keep the days under this directory (and reuse them)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        base = args.keep or Path(tmp)
        started = time.perf_counter()
        levels = ensure_day(base / f"day_{args.visits}", args.visits)
        big = base / f"day_{args.big_visits}" if args.big_visits else None
        if big is not None:
            ensure_day(big, args.big_visits)
        generate_s = time.perf_counter() - started
        bench = Bench(base / f"day_{args.visits}", big, levels, args.rounds, args.pieces, args.service)
        parts = tsv.find_parts(bench.day)
        size_mb = sum(p.stat().st_size for group in parts for p in group) / 1e6
        print(
            f"{len(levels):,} visits, {size_mb:,.0f} MB of TSV in {len(parts[0])} visit + "
            f"{len(parts[1])} hit parts; generated in {generate_s:.0f} s; {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}"
        )
        rows = [row for section in SECTIONS for row in section(bench)]
    width = max(len(r.name) for r in rows)
    for row in rows:
        verdict = "" if row.met is None else ("  met" if row.met else "  NOT met")
        print(f"{row.name:<{width}}  {row.value:>12}  {row.target}{verdict}")
    checked = [r.met for r in rows if r.met is not None]
    print("targets:", "all met" if all(checked) else "NOT all met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
