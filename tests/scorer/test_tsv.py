from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scorer import tsv

HITS = tsv.kinds_of(tsv.HIT_FIELDS, tsv.HIT_KINDS)
VISITS = tsv.kinds_of(tsv.VISIT_FIELDS, tsv.VISIT_KINDS)


def hits_file(path: Path, rows: list[tuple[str, str]], trailing_newline: bool = True) -> Path:
    lines = ["ym:pv:URL\tym:pv:dateTime\tym:pv:watchID"]  # not the order the scorer asks for
    lines += [f"https://x.ru/{i}\t{when}\t{watch_id}" for i, (watch_id, when) in enumerate(rows)]
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


def test_pieces_hold_whole_rows_and_read_as_one(tmp_path: Path) -> None:
    rows = [(str(2**64 - 1 - i * 7919), f"2024-03-01 10:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(500)]
    path = hits_file(tmp_path / "hits_0.tsv", rows, trailing_newline=False)
    whole = pa.concat_tables(tsv.batches(path, HITS, block_bytes=1 << 20))
    for block in (1, 17, 100, 4096):  # down to a piece per row, and rows longer than a block
        pieces = list(tsv.batches(path, HITS, block_bytes=block))
        assert len(pieces) > 1 and all(p.schema == whole.schema for p in pieces)
        assert pa.concat_tables(pieces).equals(whole)
    assert whole.column("ym:pv:watchID").to_pylist() == [int(w) for w, _ in rows]
    assert whole.column("ym:pv:watchID").type == pa.uint64()
    assert whole.column("ym:pv:dateTime").type == pa.timestamp("s")


def test_header_only_part_is_one_empty_piece(tmp_path: Path) -> None:
    path = hits_file(tmp_path / "hits_0.tsv", [])
    (table,) = tsv.batches(path, HITS)
    assert table.num_rows == 0 and table.column_names == list(tsv.HIT_FIELDS)
    empty = tsv.read([], HITS)
    assert empty.num_rows == 0 and empty.column("ym:pv:watchID").type == pa.uint64()


def test_largest_uint64_ids_stay_exact_and_text_ids_stay_text(tmp_path: Path) -> None:
    top = str(2**64 - 1)
    path = tmp_path / "visits_0.tsv"
    header = "\t".join(reversed(tsv.VISIT_FIELDS))
    values = {
        "ym:s:visitID": str(2**63 + 1),
        "ym:s:clientID": top,
        "ym:s:watchIDs": f"[{top},{2**63}]",
        "ym:s:dateTime": "2024-03-01 10:00:00",
        "ym:s:visitDuration": "10",
        "ym:s:pageViews": "2",
        "ym:s:bounce": "0",
        "ym:s:deviceCategory": "1",
    }
    path.write_text(header + "\n" + "\t".join(values[f] for f in reversed(tsv.VISIT_FIELDS)) + "\n")
    (table,) = tsv.batches(path, VISITS)
    assert table.column_names == list(tsv.VISIT_FIELDS)
    assert table.column("ym:s:clientID").to_pylist() == [top.encode()]  # text as it came, as bytes
    assert table.column("ym:s:visitID").to_pylist() == [str(2**63 + 1).encode()]
    assert table.column("ym:s:visitDuration").type == pa.int64()
    hits = tsv.read([hits_file(tmp_path / "hits_0.tsv", [(top, "2024-03-01 10:00:00")])], HITS)
    assert hits.column("ym:pv:watchID").to_numpy().tolist() == [2**64 - 1]


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("ym:pv:watchID", "1e3"),
        ("ym:pv:watchID", "-5"),
        ("ym:pv:watchID", "18446744073709551616"),
        ("ym:pv:dateTime", "2024-03-01 10:00:00.5"),
        ("ym:pv:dateTime", "2024-03-01 25:00:00"),
        ("ym:pv:dateTime", "2023-02-29 10:00:00"),
    ],
)
def test_a_bad_value_deep_in_a_part_names_file_and_column(tmp_path: Path, column: str, bad: str) -> None:
    rows = [("7", "2024-03-01 10:00:00")] * 300
    rows[250] = (bad, rows[0][1]) if column == "ym:pv:watchID" else ("7", bad)
    path = hits_file(tmp_path / "hits_4.tsv", rows)
    with pytest.raises(tsv.TsvError, match=rf"hits_4\.tsv: column {column}: ") as caught:
        list(tsv.batches(path, HITS, block_bytes=1000))
    assert not isinstance(caught.value, tsv.MissingColumn)


def test_an_int_that_is_not_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "visits_2.tsv"
    values = ["1", "2", "[]", "2024-03-01 10:00:00", "1.5", "1", "0", "1"]
    path.write_text("\t".join(tsv.VISIT_FIELDS) + "\n" + "\t".join(values) + "\n")
    with pytest.raises(tsv.TsvError, match=r"visits_2\.tsv: column ym:s:visitDuration: .*'1\.5'"):
        list(tsv.batches(path, VISITS))


def test_missing_column_names_file_and_column_before_reading_rows(tmp_path: Path) -> None:
    path = tmp_path / "hits_7.tsv"
    path.write_text("ym:pv:watchID\tym:pv:URL\n1\tx\n" * 2)
    with pytest.raises(tsv.MissingColumn, match=r"hits_7\.tsv: missing column\(s\) ym:pv:dateTime"):
        next(tsv.units(path, HITS))


def test_free_text_is_unescaped_and_ids_are_not_touched() -> None:
    raw = pa.array(["a\\tb", "c\\\\nd", "e\\'f\\0g", "plain", "x\\ny\\rz\\\\"])
    assert tsv.unescape(raw).to_pylist() == ["a\tb", "c\\nd", "e'f\0g", "plain", "x\ny\rz\\"]
    plain = pa.array(["no", "escapes"])
    assert tsv.unescape(plain) is plain
    assert tsv.kinds_of(["ym:s:startURL", "ym:pv:title", "ym:s:visitID"], {}) == {
        "ym:s:startURL": "escaped",
        "ym:pv:title": "escaped",
        "ym:s:visitID": "text",
    }
    assert np.dtype("uint64") == tsv.to_frame(pa.table({"x": pa.array([2**64 - 1], pa.uint64())}))["x"].dtype
