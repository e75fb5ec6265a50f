"""`metrika-score` API commands, run in-process (in a thread: the gateway serves on this test's loop)
against a real gateway, scorer and uploader on the sandbox."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import socket
import uuid

import pytest

from scorer import api_cli, cli
from scorer.main import main as scorer_main
from tests.conftest import API_KEY, completed_task, override
from tests.gateway.test_listings import create_webhook, row, submit

DAY = dt.date.today() - dt.timedelta(days=2)


@pytest.fixture
def run_cli(gateway, capsys, monkeypatch):
    """main(argv) against the test gateway: (exit code, stdout, stderr)."""
    monkeypatch.delenv(api_cli.URL_ENV, raising=False)
    monkeypatch.setenv(api_cli.KEY_ENV, API_KEY)
    url = str(gateway.make_url("")).rstrip("/")

    async def run(*argv: str, url: str = url) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(api_cli.main, [*argv, "--url", url])
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def test_submit_follows_a_task_to_its_end_and_fetches_its_result(
    run_cli, gateway, settings, run_service, tmp_path
):
    run_service(scorer_main, override(settings, logs_poll_initial_s=0.4, http_retry_max_s=0.5))
    code, out, err = await run_cli(
        "tasks", "submit", "--date", DAY.isoformat(), "--counter", "4242", "--token", "sandbox-token",
        "--follow", "--interval", "0.2",
    )  # fmt: skip
    assert code == 0, err
    task_id, status = out.split()[:2]
    assert status == "completed:" and "level-4+ visits of" in out
    assert "100%" in err and "sandbox-token" not in out + err and API_KEY not in out + err

    code, out, _ = await run_cli("tasks", "list", "--status", "completed")
    assert code == 0 and task_id in out and out.splitlines()[0].split()[:3] == ["task_id", "counter", "date"]

    code, out, _ = await run_cli("tasks", "result", task_id, "--format", "json")
    visits = json.loads(out)
    assert code == 0 and visits and set(visits[0]) >= set(api_cli.RESULT_FIELDS)
    code, _, err = await run_cli(
        "tasks", "result", task_id, "--format", "csv", "--out", str(tmp_path / "r.csv")
    )
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert code == 0 and f"{len(visits)} level-4+ visits written" in err
    assert [r["visitId"] for r in rows] == [v["visitId"] for v in visits]
    assert rows[0]["clientId"] == visits[0]["clientId"]

    code, out, _ = await run_cli("tasks", "status", task_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "completed"
    # the scorer kept each visit's device class
    summary = await (await gateway.get(f"/tasks/{task_id}/summary")).json()
    assert summary["by_device"]["unknown"] == 0 and sum(summary["by_device"].values()) == len(visits)
    assert summary["by_device"]["desktop"] and summary["by_device"]["mobile"]


async def test_a_result_has_every_page(run_cli, pool):
    task_id = await completed_task(pool, 2500, start=dt.datetime.combine(DAY, dt.time(1)))
    code, out, _ = await run_cli("tasks", "result", str(task_id), "--format", "csv")
    lines = out.splitlines()
    assert code == 0 and lines[0] == ",".join(api_cli.RESULT_FIELDS) and len(lines) == 2501
    assert lines[1].startswith(f"{2**64 - 1},{2**63},")  # ids as their exact text
    wanted = str(2**63 + 7)
    code, out, _ = await run_cli("tasks", "result", str(task_id), "--client-id", wanted)
    assert [v["clientId"] for v in json.loads(out)] == [wanted]


async def test_webhooks_are_created_listed_rotated_and_deactivated(run_cli, gateway):
    code, out, _ = await run_cli(
        "webhooks", "create", "--name", "Shop CRM", "--counter", "123456", "--token", "y0_t"
    )
    assert code == 0 and "secret" in out and "y0_t" not in out
    webhook_id = out.split()[1]
    code, out, _ = await run_cli("webhooks", "list")
    assert code == 0 and webhook_id in out and "Shop CRM" in out
    code, out, _ = await run_cli("webhooks", "rotate", webhook_id, "--json")
    secret = json.loads(out)["secret"]
    code, out, _ = await run_cli("webhooks", "deactivate", webhook_id)
    assert code == 0 and out == f"{webhook_id} deactivated\n"
    hooks = json.loads((await run_cli("webhooks", "list", "--json"))[1])
    assert [h["is_active"] for h in hooks if h["webhook_id"] == webhook_id] == [False]
    resp = await gateway.post(
        f"/webhook/offline-conversions/{webhook_id}",
        json={"conversions": [row()]},
        headers={"X-Webhook-Secret": secret, "Authorization": ""},
    )
    assert resp.status == 403


async def test_batches_are_listed_and_shown_with_their_row_errors(run_cli, gateway):
    hook = await create_webhook(gateway)
    first = await submit(gateway, hook, [row("111")])
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}?partial=true",
        json={"conversions": [row("222"), row("333", target="")]},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    second = (await resp.json())["batch_id"]
    code, out, err = await run_cli("batches", "list", hook["webhook_id"])
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [second, first]
    assert "1-2 of 2" in err
    code, out, _ = await run_cli("batches", "show", hook["webhook_id"], second)
    assert code == 0 and f"batch      {second}" in out and "rows       0 processed of 2" in out
    assert "row 1: target" in out

    code, out, _ = await run_cli("search", "--client-id", "333")
    assert code == 0 and second in out and "error" in out.splitlines()[1]
    code, _, err = await run_cli("search")
    assert code == 1 and "--client-id" in err


async def test_dead_letters_are_listed(run_cli, pool):
    await pool.execute(
        "INSERT INTO dead_letters (routing_key, body, reason) VALUES ('score_tasks', '{}', 'poison: no task')"
    )
    code, out, _ = await run_cli("dead-letters", "list")
    assert code == 0 and "score_tasks" in out and "poison: no task" in out


async def test_failures_are_one_line_and_a_nonzero_exit(run_cli, monkeypatch):
    code, _, err = await run_cli("tasks", "status", str(uuid.uuid4()))
    assert code == 1 and err == "error: 404 Not Found: Task not found\n"
    code, _, err = await run_cli("tasks", "list", "--api-key", "wrong-key-123")
    assert (
        code == 1
        and err.startswith("error: 401 Unauthorized: Invalid API key")
        and "wrong-key-123" not in err
    )
    code, _, err = await run_cli("tasks", "list", "--date", "2025-13-01")
    assert code == 1 and "422" in err and "query.date" in err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code, _, err = await run_cli("tasks", "list", url=closed)
    assert code == 1 and err == f"error: cannot reach the gateway at {closed}: connection refused " + (
        "(is it running? check --url / METRIKA_SCORE_URL)\n"
    )
    monkeypatch.delenv(api_cli.KEY_ENV)
    with pytest.raises(SystemExit) as exit_:
        await run_cli("tasks", "list")
    assert exit_.value.code == 2


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])  # the installed entry point of before: the same commands
    out = capsys.readouterr().out
    for command in ("score", "tasks", "webhooks", "batches", "dead-letters", "search"):
        assert command in out
    for argv in (["tasks", "--help"], ["tasks", "submit", "--help"], ["batches", "show", "--help"]):
        with pytest.raises(SystemExit):
            api_cli.main(argv)
        assert "--help" in capsys.readouterr().out
