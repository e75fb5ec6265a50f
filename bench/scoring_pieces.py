"""Where the CLI's time goes: each piece of scoring a day, one after another on one thread.

    python bench/scoring_pieces.py DAY_DIR

Run by ``bench/scoring.py --pieces``.  CPU seconds of this process per piece (the CLI runs the
same pieces overlapped on a few threads, so its wall time is less than their sum).  Prints
tab-separated rows: piece, seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")
CPU: defaultdict[str, float] = defaultdict(float)


def timed(piece: str, work: Callable[..., T], *args: object) -> T:
    started = time.process_time()
    try:
        return work(*args)
    finally:
        CPU[piece] += time.process_time() - started


def each(piece: str, items: Iterator[T]) -> Iterator[T]:
    while True:
        item = timed(piece, next, items, None)
        if item is None:
            return
        yield item


def main(day: Path) -> None:
    command = "import time; t = time.process_time(); import scorer.cli; print(time.process_time() - t)"
    imports = float(subprocess.run([sys.executable, "-c", command], capture_output=True, text=True).stdout)

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from scorer import cli, features, join, model, parsing, scoring, tsv, workers
    from scorer.spill import Spill

    models = timed("model load (compiled tables cached)", model.load_models)
    visit_paths, hit_paths = tsv.find_parts(day)
    hit_bytes = sum(p.stat().st_size for p in hit_paths)
    bits = join.bits_for(hit_bytes // scoring._HIT_LINE_BYTES)
    visit_kinds, hit_kinds = scoring._VISIT_KINDS, scoring._HIT_KINDS
    watch_ids = 0.0
    with Spill(day, scoring.SPILL_BUDGET) as spill, workers.pool() as executor:
        joined = join.Join(spill, bits)
        for path in visit_paths:
            for piece in each("read visits (pyarrow.csv)", tsv.units(path, visit_kinds)):
                table = timed("read visits (pyarrow.csv)", tsv.parse, piece, visit_kinds)
                started = time.process_time()  # measured again inside prepare_visits: not in the sum
                parsing.id_lists(table.column("ym:s:watchIDs"), "ym:s:watchIDs")
                watch_ids += time.process_time() - started
                prepared, listed = timed(
                    "visit columns (watchIDs, times, devices)", features.prepare_visits, table
                )
                positions = np.arange(listed.size, dtype=np.int64)
                scattered = timed("join: to buckets", join.scatter, listed, positions, bits)
                timed("join: to buckets", joined.add_visits, prepared, scattered)
        for path in hit_paths:
            for piece in each("read hits (pyarrow.csv)", tsv.units(path, hit_kinds)):
                table = timed("read hits (pyarrow.csv)", tsv.parse, piece, hit_kinds)
                ids = table.column("ym:pv:watchID").to_numpy()
                times = pc.cast(table.column("ym:pv:dateTime"), pa.int64()).to_numpy()
                scattered = timed("join: to buckets", join.scatter, ids, times, bits)
                timed("join: to buckets", joined.add_hits, scattered)
        selected = scoring._Selected()
        for prepared, listed_times in each("join: buckets", joined.batches(executor)):
            matrix = timed("features", features.batch_matrix, prepared, listed_times)
            scores, chosen = timed("scoring (compiled trees)", scoring.predict, matrix, models)
            timed("output", selected.add, prepared, scores, chosen)
        table = timed("output", selected.table, models.version)
        timed("output", cli.write_seed_json, table, day / "pieces-output.json")
        (day / "pieces-output.json").unlink()
    print(f"imports (python -c 'import scorer.cli')\t{imports:.2f} s")
    for piece, seconds in CPU.items():
        print(f"{piece}\t{seconds:.2f} s")
    print(f"sum of the pieces\t{imports + sum(CPU.values()):.2f} s")
    print(f"  of which parsing ym:s:watchIDs\t{watch_ids:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
