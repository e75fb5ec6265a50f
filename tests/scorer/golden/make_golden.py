"""Regenerate the golden fixture days and what the scorer made of them.

    .venv/bin/python tests/scorer/golden/make_golden.py

The committed files were written by the code at commit 16d32eb (before the pyarrow reader):
``<day>/visits_*.tsv.gz`` and ``<day>/hits_*.tsv.gz`` are the Logs API parts (simulated, several
parts, extra columns, escaped text, ids above 2**63, hand-made rows with 2**64 - 1 as a clientID and
a watchID), and ``<day>/expected.csv.gz`` holds, per visit in file order, visitId, clientId,
dateTime, the features, and the score and selection under the models of ``expected.json``.  The
TSVs are committed (not re-simulated at test time) so a change to the simulator cannot move them.
Rerunning this script with later code rewrites ``expected.csv.gz`` with *that* code's output: only
do it on purpose.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, simulate_day, write_tsv  # noqa: E402
from scorer import scoring, tsv  # noqa: E402
from scorer.features import FEATURES, build_matrix  # noqa: E402
from scorer.model import load_models  # noqa: E402

HERE = Path(__file__).resolve().parent
TOP = 2**64 - 1


def _write(path: Path, frame: pd.DataFrame, fields: list[str], extra_lines: str = "") -> None:
    out = io.StringIO()
    write_tsv(frame, fields, out)
    path.write_bytes(gzip.compress((out.getvalue() + extra_lines).encode("utf-8"), mtime=0))


def _split(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=parts - 1, replace=False)) if n > parts else []
    return np.split(np.arange(n), cuts)


def _hand_rows(visit_fields: list[str], hit_fields: list[str]) -> tuple[str, str]:
    """Two visits and their hits written as raw TSV lines: the largest UInt64 as clientID and
    watchID, ids just above 2**63, and a startURL with every ClickHouse escape."""
    visit = {
        "ym:s:visitID": str(TOP - 1),
        "ym:s:counterID": "5151",
        "ym:s:watchIDs": f"[{TOP},{2**63},{2**63 + 1}]",
        "ym:s:dateTime": "2024-11-30 12:00:00",
        "ym:s:clientID": str(TOP),
        "ym:s:visitDuration": "95",
        "ym:s:pageViews": "3",
        "ym:s:bounce": "0",
        "ym:s:deviceCategory": "1",
        "ym:s:isNewUser": "0",
        "ym:s:startURL": "https://x.ru/a\\tb\\nc\\\\d\\'e\\0f\\rg",
    }
    other = {
        **visit,
        "ym:s:visitID": str(2**63),
        "ym:s:watchIDs": "[]",
        "ym:s:clientID": str(2**63 + 7),
        "ym:s:deviceCategory": "2",
        "ym:s:startURL": "https://x.ru/\\'quoted\\'",
    }
    hits = [(TOP, "2024-11-30 12:00:00"), (2**63, "2024-11-30 12:00:40"), (2**63 + 1, "2024-11-30 12:01:30")]
    visit_lines = "".join("\t".join(v[f] for f in visit_fields) + "\n" for v in (visit, other))
    hit_lines = ""
    for watch_id, when in hits:
        row = {f: "1" for f in hit_fields}
        row |= {"ym:pv:watchID": str(watch_id), "ym:pv:dateTime": when, "ym:pv:URL": "https://x.ru/\\\\"}
        row |= {"ym:pv:clientID": str(TOP)}
        hit_lines += "\t".join(row[f] for f in hit_fields) + "\n"
    return visit_lines, hit_lines


DAYS = {
    # name: (counter, day, visits, seed, visit parts, hit parts, hand-made rows)
    "day_a": (4242, dt.date(2024, 7, 1), 900, 1, 3, 2, False),
    "day_b": (5151, dt.date(2024, 11, 30), 600, 2, 4, 3, True),
    "day_c": (6060, dt.date(2025, 1, 2), 300, 3, 2, 4, False),
}


def write_day(name: str) -> Path:
    counter, day, n, seed, visit_parts, hit_parts, hand = DAYS[name]
    sim = simulate_day(counter, day, n_visits=n, seed=seed)
    rng = np.random.default_rng(seed)
    out = HERE / name
    out.mkdir(exist_ok=True)
    for old in out.glob("*.tsv.gz"):
        old.unlink()
    # Header order differs between parts: the reader maps columns by name.
    visit_orders = [VISIT_FIELDS, VISIT_FIELDS[::-1], VISIT_FIELDS[3:] + VISIT_FIELDS[:3]]
    hit_orders = [HIT_FIELDS, HIT_FIELDS[::-1]]
    visit_extra, hit_extra = _hand_rows(VISIT_FIELDS, HIT_FIELDS) if hand else ("", "")
    for i, rows in enumerate(_split(len(sim.visits), visit_parts, rng)):
        last = i == visit_parts - 1
        order = VISIT_FIELDS if last else visit_orders[i % 3]
        _write(out / f"visits_{i}.tsv.gz", sim.visits.iloc[rows], order, visit_extra if last else "")
    for i, rows in enumerate(_split(len(sim.hits), hit_parts, rng)):
        last = i == hit_parts - 1
        order = HIT_FIELDS if last else hit_orders[i % 2]
        _write(out / f"hits_{i}.tsv.gz", sim.hits.iloc[rows], order, hit_extra if last else "")
    if name == "day_c":  # a header-only part among the others
        _write(out / f"hits_{hit_parts}.tsv.gz", sim.hits.iloc[:0], HIT_FIELDS)
    return out


def record(directory: Path) -> None:
    """Today's reading, features and scores of the parts in ``directory``, per visit in file order."""
    import tempfile

    models = load_models()
    with tempfile.TemporaryDirectory() as tmp:
        for part in directory.glob("*.tsv.gz"):
            (Path(tmp) / part.name.removesuffix(".gz")).write_bytes(gzip.decompress(part.read_bytes()))
        visit_paths, hit_paths = tsv.find_parts(tmp)
        visits, hits = tsv.read_visits(visit_paths), tsv.read_hits(hit_paths)
        matrix = build_matrix(visits, hits)
        scores, selected = scoring.predict(matrix, models)
        result, total = scoring.score_dir(tmp, models)
    assert total == len(visits)
    assert result["visitId"].tolist() == sorted(
        visits["ym:s:visitID"][selected].tolist(),
        key=lambda v: (visits.set_index("ym:s:visitID").loc[v, "ym:s:dateTime"], int(v)),
    )
    assert np.array_equal(result["score"].to_numpy(), scores[selected][_order(visits, selected)])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["visitId", "clientId", "dateTime", "score", "selected", *FEATURES])
    for i in range(len(visits)):
        writer.writerow(
            [
                visits["ym:s:visitID"].iat[i],
                visits["ym:s:clientID"].iat[i],
                visits["ym:s:dateTime"].iat[i],
                repr(float(scores[i])),
                int(selected[i]),
                *(repr(float(x)) for x in matrix[:, i]),
            ]
        )
    (directory / "expected.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))
    meta = {"model_version": models.version, "visits": len(visits), "selected": int(selected.sum())}
    (directory / "expected.json").write_text(json.dumps(meta, indent=2) + "\n")


def _order(visits: pd.DataFrame, selected: np.ndarray) -> np.ndarray:
    chosen = visits[selected]
    keys = list(zip(chosen["ym:s:dateTime"], chosen["ym:s:visitID"].map(int), strict=True))
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


if __name__ == "__main__":
    for day_name in DAYS:
        record(write_day(day_name))
        print(day_name, (HERE / day_name / "expected.json").read_text().strip().replace("\n", " "))
