from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pandas as pd
import pyarrow as pa

from sandbox import simulator
from scorer import cli, model, scoring, tsv

DAY = dt.date.today() - dt.timedelta(days=3)
ROOT = Path(__file__).resolve().parents[2]


def _write_parts(directory, day, parts: int = 2):
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame, fields in (("visits", day.visits, tsv.VISIT_FIELDS), ("hits", day.hits, tsv.HIT_FIELDS)):
        size = -(-len(frame) // parts)
        for part in range(parts):
            with open(directory / f"{name}_{part}.tsv", "w") as out:
                simulator.write_tsv(frame.iloc[part * size : (part + 1) * size], list(fields), out)


def test_logs_dir_mode_writes_the_seed_format(tmp_path):
    day = simulator.simulate_day(99, DAY, n_visits=500)
    _write_parts(tmp_path / "logs", day)
    out = tmp_path / "out.json"
    assert (
        cli.main(
            ["score", "--date", DAY.isoformat(), "--logs-dir", str(tmp_path / "logs"), "--out", str(out)]
        )
        == 0
    )

    records = json.loads(out.read_text())
    expected, total = scoring.score_dir(tmp_path / "logs", model.load_models())
    assert total == 500 and len(records) == len(expected) > 0
    assert set(records[0]) == {"visitId", "clientId", "dateTime", "visitDuration"}
    assert [r["visitId"] for r in records] == list(expected["visitId"])
    assert all(isinstance(r["visitId"], str) and isinstance(r["visitDuration"], int) for r in records)


def test_missing_token_counter_or_future_date_are_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("METRIKA_TOKEN", raising=False)
    monkeypatch.delenv("METRIKA_COUNTER", raising=False)
    assert cli.main(["score", "--date", DAY.isoformat()]) == 2
    assert "token is required" in capsys.readouterr().err
    assert cli.main(["score", "--date", DAY.isoformat(), "--token", "t"]) == 2
    assert "counter is required" in capsys.readouterr().err
    today = dt.date.today().isoformat()
    assert cli.main(["score", "--date", today, "--token", "t", "--counter", "1"]) == 2
    assert "past" in capsys.readouterr().err
    assert cli.main(["score", "--date", DAY.isoformat(), "--logs-dir", str(tmp_path)]) == 1
    assert "no visits" in capsys.readouterr().err


def test_environment_is_read_through_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METRIKA_COUNTER", "12ab")
    assert cli.main(["score", "--date", DAY.isoformat(), "--token", "t"]) == 2
    assert "METRIKA_COUNTER" in capsys.readouterr().err  # no longer silently ignored
    monkeypatch.setenv("METRIKA_COUNTER", "77")
    monkeypatch.setenv("METRIKA_TOKEN", "env-token")
    monkeypatch.setenv("METRIKA_API_URL", "http://127.0.0.1:9")  # nothing listens: a connection error
    monkeypatch.setenv("HTTP_RETRY_ATTEMPTS", "1")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["score", "--date", DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert "connection_error" in err and "127.0.0.1:9" in err and "env-token" not in err
    assert list(tmp_path.iterdir()) == []  # its download directory is removed


async def test_api_mode_pulls_the_sandbox_and_writes_default_file(sandbox, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scorer.cli", "score", "--date", DAY.isoformat(), "--counter", "77",
        "--token", "sandbox-token", "--api-url", str(sandbox.make_url("")).rstrip("/"),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's code, whatever the venv installed
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    records = json.loads((tmp_path / f"level4_visits_{DAY.isoformat()}.json").read_text())
    day = simulator.simulate_day(77, DAY, n_visits=400)
    _write_parts(tmp_path / "direct", day, parts=1)
    expected, _ = scoring.score_dir(tmp_path / "direct", model.load_models())
    assert [r["visitId"] for r in records] == list(expected["visitId"])
    assert "level-4+ visits written" in err.decode()
    # the Logs API requests were cleaned afterwards, as the protocol demands
    body = await _get(sandbox, "/sandbox/requests")
    records = body["requests"] if isinstance(body, dict) else body
    log = [(r["method"], r["path"]) for r in records]
    assert sum(1 for method, path in log if method == "POST" and path.endswith("/clean")) == 2


async def _get(server, path):
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as resp:
        return await resp.json()


def test_seed_json_is_json_dumps_of_the_records(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_JSON_ROWS", 2)  # several slices
    frame = pd.DataFrame(
        {
            "visitId": pd.Series(["1", str(2**64 - 1), "3"], dtype=str),
            "clientId": pd.Series(['a"b\\c\nd\x01é', str(2**63), "\u2028"], dtype=str),
            "dateTime": pd.Series(["2024-01-01 00:00:00"] * 3, dtype=str),
            "visitDuration": [5, 70, 0],
        }
    )
    for rows in (frame, frame.iloc[1:], frame.iloc[:0]):
        records = [
            {"visitId": v, "clientId": c, "dateTime": d, "visitDuration": int(s)}
            for v, c, d, s in zip(*(rows[f] for f in cli.SEED_FIELDS), strict=True)
        ]
        cli.write_seed_json(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / "out.json")
        assert (tmp_path / "out.json").read_text(encoding="utf-8") == json.dumps(
            records, ensure_ascii=False, indent=2
        )


def test_logs_dir_run_loads_no_pandas_sklearn_scipy_or_aiohttp_once_the_models_are_compiled(tmp_path):
    day = simulator.simulate_day(99, DAY, n_visits=300)
    _write_parts(tmp_path / "logs", day)
    heavy = "{'sklearn', 'scipy', 'aiohttp', 'joblib', 'pandas'}"
    probe = (
        "import sys; from scorer import cli; code = cli.main(sys.argv[1:]); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    )
    argv = [
        "score",
        "--date",
        DAY.isoformat(),
        "--logs-dir",
        str(tmp_path / "logs"),
        "--out",
        str(tmp_path / "o"),
    ]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "sklearn" in first.stdout  # compiled (and checked against predict_proba) once
    again = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "[]"
