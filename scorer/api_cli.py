"""`metrika-score <command>`: the command line of a running gateway's API (and, through scorer.cli, the
one-shot `score` and `rekey`).

    metrika-score tasks submit --date 2026-11-25 --counter 123456 --follow
    metrika-score tasks result TASK_ID --format csv --out visits.csv
    metrika-score webhooks create --name CRM --counter 123456 --token y0_...
    metrika-score batches show WEBHOOK_ID BATCH_ID
    metrika-score search --client-id 1750856904411275030

The gateway's address and API key come from --url / --api-key or METRIKA_SCORE_URL / METRIKA_SCORE_API_KEY.
Lists print a table (--json: the answer as JSON). Failures print one line on stderr and exit 1 (2 for a
usage error); neither the API key nor a token is ever printed."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from scorer.api_client import ApiClient, ApiError

DEFAULT_URL = "http://localhost:8000"
URL_ENV, KEY_ENV = "METRIKA_SCORE_URL", "METRIKA_SCORE_API_KEY"
# the one-shot commands of scorer.cli (they need the scoring stack, not a gateway); `calibrate` arrives
# with main's scorer.cli
LOCAL_COMMANDS = ("score", "rekey", "calibrate")
API_COMMANDS = ("tasks", "webhooks", "batches", "dead-letters", "search")
FINAL_TASK_STATES = ("completed", "failed")
RESULT_FIELDS = ("visitId", "clientId", "dateTime", "visitDuration", "score", "model_version")
WEBHOOK_PATH = "/webhook/offline-conversions"

Command = Callable[[ApiClient, argparse.Namespace, TextIO], int]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in LOCAL_COMMANDS:
        from scorer import cli  # the scoring stack (pandas, the models) only when scoring

        return cli.main(args_list)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not args.api_key:
        parser.error(f"an API key is required: --api-key or {KEY_ENV}")
    client = ApiClient(args.url, args.api_key, timeout_s=args.timeout)
    try:
        code: int = args.run(client, args, sys.stdout)
        return code
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # --out not writable
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrika-score",
        description="Score Yandex Metrika visits and upload offline conversions: the command line of a "
        "running gateway's API, and the one-shot `score`.",
        epilog=f"Environment: {URL_ENV} (default {DEFAULT_URL}), {KEY_ENV}. "
        "Run `metrika-score COMMAND --help` for a command's options.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.environ.get(URL_ENV, DEFAULT_URL), help=f"gateway base URL (or {URL_ENV})"
    )
    common.add_argument("--api-key", default=os.environ.get(KEY_ENV), help=f"API key (or {KEY_ENV})")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    common.add_argument("--json", action="store_true", help="print the answer as JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "score", help="find the level-4+ visits of one day here, without a gateway (see score --help)"
    )
    sub.add_parser("rekey", help="re-encrypt every stored Metrika token under the first TOKEN_ENCRYPTION_KEY")
    _tasks(sub, common)
    _webhooks(sub, common)
    _batches(sub, common)
    dead = sub.add_parser("dead-letters", help="the dead-letter queue").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = _listing(dead, common, "list", "messages that could not be processed, newest first, with why")
    listing.add_argument("--routing-key", help="only this queue's (score_tasks, upload_conversions, ...)")
    listing.add_argument("--replayed", choices=("true", "false"), help="only replayed ones, or only others")
    listing.set_defaults(run=_dead_letters)
    search = sub.add_parser(
        "search",
        parents=[common],
        help="find conversion rows by an identifier across uploads and webhook batches",
        description="Conversion rows of uploads and webhook batches, newest first; several filters must "
        "all match.",
    )
    for flag, what in (
        ("--client-id", "Metrika ClientID"),
        ("--user-id", "UserID"),
        ("--yclid", "yclid"),
        ("--purchase-id", "purchase id"),
        ("--crm-id", "CRM lead or deal id (amoCRM, Bitrix24 webhooks)"),
    ):
        search.add_argument(flag, help=f"the row's {what}, exactly")
    _page_options(search)
    search.set_defaults(run=_search)
    return parser


def _listing(sub: Any, common: argparse.ArgumentParser, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=text, description=text)
    _page_options(parser)
    return parser


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=100, help="items per page, 1..1000 (default 100)")
    parser.add_argument("--offset", type=int, default=0, help="items to skip (default 0)")


def _tasks(sub: Any, common: argparse.ArgumentParser) -> None:
    tasks = sub.add_parser("tasks", help="scoring tasks: submit, follow, list, fetch results")
    actions = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser(
        "submit",
        parents=[common],
        help="score one day of a counter on the service",
        description="Submit a scoring task; with --follow, show its progress until it finishes (exit 1 "
        "if it fails).",
    )
    submit.add_argument("--date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD, a past day")
    submit.add_argument("--counter", type=int, help="Metrika counter id (default: the gateway's)")
    submit.add_argument(
        "--token",
        default=os.environ.get("METRIKA_TOKEN"),
        help="OAuth token (or METRIKA_TOKEN; default: the gateway's)",
    )
    submit.add_argument("--follow", action="store_true", help="show a progress bar until the task finishes")
    submit.add_argument(
        "--interval", type=float, default=1.0, help="seconds between status checks (default 1)"
    )
    submit.set_defaults(run=_submit)
    status = actions.add_parser("status", parents=[common], help="a task's status")
    status.add_argument("task_id")
    status.set_defaults(run=_task_status)
    listing = _listing(actions, common, "list", "tasks, newest first")
    listing.add_argument("--status", choices=("pending", "running", "completed", "failed"))
    listing.add_argument("--counter", type=int)
    listing.add_argument("--date", help="the day scored, YYYY-MM-DD")
    listing.add_argument("--date-from", help="days scored from, YYYY-MM-DD")
    listing.add_argument("--date-to", help="days scored up to, YYYY-MM-DD")
    listing.set_defaults(run=_list_tasks)
    result = actions.add_parser(
        "result",
        parents=[common],
        help="a completed task's level-4+ visits, all pages, as JSON or CSV",
        description="Fetch every page of a completed task's result and write it as JSON (an array) or CSV.",
    )
    result.add_argument("task_id")
    result.add_argument("--format", choices=("json", "csv"), default="json", help="default json")
    result.add_argument("--out", type=Path, help="output file (default: standard output)")
    result.add_argument("--client-id", help="only this ClientID's visits")
    result.set_defaults(run=_result)


def _webhooks(sub: Any, common: argparse.ArgumentParser) -> None:
    hooks = sub.add_parser("webhooks", help="offline-conversion webhooks: create, list, rotate, deactivate")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        parents=[common],
        help="create a webhook; its secret is shown once",
        description="Create a webhook. The answer shows its secret and URL once: keep them.",
    )
    create.add_argument("--name", required=True)
    create.add_argument("--counter", type=int, required=True, help="Metrika counter id")
    create.add_argument(
        "--token",
        default=os.environ.get("METRIKA_TOKEN"),
        help="Metrika OAuth token the uploads use (or METRIKA_TOKEN)",
    )
    create.add_argument("--description")
    create.add_argument("--source", choices=("json", "amocrm", "bitrix24"), default="json")
    create.add_argument("--mapping", type=json.loads, help="a CRM source's mapping, as JSON")
    create.set_defaults(run=_create_webhook)
    actions.add_parser("list", parents=[common], help="every webhook").set_defaults(run=_list_webhooks)
    rotate = actions.add_parser(
        "rotate", parents=[common], help="give a webhook a new secret (the old one stops working)"
    )
    rotate.add_argument("webhook_id")
    rotate.set_defaults(run=_rotate)
    deactivate = actions.add_parser(
        "deactivate", parents=[common], help="refuse a webhook's submissions (its batches stay readable)"
    )
    deactivate.add_argument("webhook_id")
    deactivate.set_defaults(run=_deactivate)


def _batches(sub: Any, common: argparse.ArgumentParser) -> None:
    batches = sub.add_parser("batches", help="a webhook's batches: list, show one with its row errors")
    actions = batches.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _listing(actions, common, "list", "a webhook's batches, newest first")
    listing.add_argument("webhook_id")
    listing.add_argument(
        "--status", choices=("accepted", "pending", "uploaded", "processing", "completed", "error")
    )
    listing.add_argument("--since", help="received at or after (ISO 8601; UTC without an offset)")
    listing.add_argument("--until", help="received before (ISO 8601; UTC without an offset)")
    listing.set_defaults(run=_list_batches)
    show = actions.add_parser("show", parents=[common], help="a batch's status with its row errors")
    show.add_argument("webhook_id")
    show.add_argument("batch_id")
    show.set_defaults(run=_show_batch)


def _submit(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {"date": args.date.isoformat()}
    if args.counter is not None:
        body["counter"] = args.counter
    if args.token:
        body["token"] = args.token
    task_id = client.post("/tasks", body)["task_id"]
    if not args.follow:
        _emit(out, args, {"task_id": task_id}, f"{task_id}\n")
        return 0
    print(f"task {task_id}", file=sys.stderr)
    status = _follow(client, task_id, args.interval)
    _emit(out, args, {"task_id": task_id, **status}, _task_line(task_id, status))
    return 0 if status["status"] == "completed" else 1


def _follow(client: ApiClient, task_id: str, interval_s: float) -> dict[str, Any]:
    from tqdm import tqdm  # a dependency of the package; only the follower needs it

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n_fmt}% [{elapsed}]", file=sys.stderr)
    try:
        while True:
            status: dict[str, Any] = client.get(f"/tasks/{task_id}/status")
            bar.set_description(f"{status['status']}: {status.get('message') or ''}"[:40].ljust(40))
            bar.update(max(0, int(status.get("progress") or 0) - bar.n))
            if status["status"] in FINAL_TASK_STATES:
                return status
            time.sleep(interval_s)
    finally:
        bar.close()


def _task_line(task_id: str, status: dict[str, Any]) -> str:
    line = f"{task_id} {status['status']}"
    if status["status"] == "completed":
        line += f": {status.get('message') or ''}"
    elif status.get("error"):
        line += f": {status['error']}"
    return line + "\n"


def _task_status(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    status = client.get(f"/tasks/{_path(args.task_id)}/status")
    _emit(out, args, status, _table([{"task_id": args.task_id, **status}], _TASK_STATUS_COLUMNS))
    return 0


_TASK_STATUS_COLUMNS = ("task_id", "status", "progress", "message", "error")


def _list_tasks(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params = {
        "status": args.status,
        "counter": args.counter,
        "date": args.date,
        "date_from": args.date_from,
        "date_to": args.date_to,
    }
    page = client.get("/tasks", {**params, **_page(args)})
    columns = (
        "task_id",
        "counter",
        "date",
        "status",
        "progress",
        "level4_visits",
        "total_visits",
        "created_at",
    )
    _emit_page(out, args, page, columns)
    return 0


def _result(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    path = f"/tasks/{_path(args.task_id)}/result"
    rows = [row for page in client.pages(path, {"client_id": args.client_id}) for row in page["data"]]
    if args.format == "json":
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if args.out is None:
        out.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"{len(rows)} level-4+ visits written to {args.out}", file=sys.stderr)
    return 0


def _create_webhook(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    if not args.token:
        raise ApiError("a Metrika token is required: --token or METRIKA_TOKEN")
    body: dict[str, Any] = {
        "name": args.name,
        "counter_id": args.counter,
        "token": args.token,
        "source": args.source,
    }
    if args.description is not None:
        body["description"] = args.description
    if args.mapping is not None:
        body["mapping"] = args.mapping
    created = client.post(WEBHOOK_PATH, body)
    text = (
        f"webhook_id {created['webhook_id']}\nurl        {created['url']}\nsecret     {created['secret']}\n"
        "(the secret is shown once: keep it)\n"
    )
    _emit(out, args, created, text)
    return 0


def _list_webhooks(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    hooks = client.get(WEBHOOK_PATH)
    columns = ("webhook_id", "name", "counter_id", "source", "is_active", "created_at")
    _emit(out, args, hooks, _table(hooks, columns))
    return 0


def _rotate(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    rotated = client.post(f"{WEBHOOK_PATH}/{_path(args.webhook_id)}/rotate-secret")
    text = f"url        {rotated['url']}\nsecret     {rotated['secret']}\n(the old secret no longer works)\n"
    _emit(out, args, rotated, text)
    return 0


def _deactivate(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    hook = client.patch(f"{WEBHOOK_PATH}/{_path(args.webhook_id)}", {"is_active": False})
    _emit(out, args, hook, f"{hook['webhook_id']} deactivated\n")
    return 0


def _list_batches(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params = {"status": args.status, "since": args.since, "until": args.until, **_page(args)}
    page = client.get(f"{WEBHOOK_PATH}/{_path(args.webhook_id)}/batches", params)
    _emit_page(out, args, page, ("batch_id", "status", "total", "processed", "received_at", "finished_at"))
    return 0


def _show_batch(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    batch = client.get(f"{WEBHOOK_PATH}/{_path(args.webhook_id)}/batches/{_path(args.batch_id)}")
    lines = [
        f"batch      {batch['batch_id']}",
        f"status     {batch['status']}",
        f"rows       {batch['processed']} processed of {batch['total']}",
        f"received   {batch['created_at']}",
    ]
    if batch.get("last_error"):
        lines.append(f"last error {batch['last_error']} (next attempt {batch.get('next_attempt_at')})")
    errors = batch.get("errors") or []
    if errors:
        lines.append("errors:")
        for error in errors:
            where = "batch" if error.get("index") is None else f"row {error['index']}"
            kind = f" [{error['status']}]" if error.get("status") else ""
            lines.append(f"  {where}{kind}: {error['reason']}")
    _emit(out, args, batch, "\n".join(lines) + "\n")
    return 0


def _dead_letters(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params = {"routing_key": args.routing_key, "replayed": args.replayed, **_page(args)}
    page = client.get("/dead-letters", params)
    _emit_page(out, args, page, ("id", "routing_key", "created_at", "replay_count", "reason"))
    return 0


def _search(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    filters = {
        "client_id": args.client_id,
        "user_id": args.user_id,
        "yclid": args.yclid,
        "purchase_id": args.purchase_id,
        "crm_id": args.crm_id,
    }
    if all(value is None for value in filters.values()):
        raise ApiError("give at least one of --client-id, --user-id, --yclid, --purchase-id, --crm-id")
    page = client.get("/search", {**filters, **_page(args)})
    for item in page["data"]:
        item["id"] = item.get("batch_id") or item.get("upload_id")
        item["identifier"] = item["client_id"] or item["user_id"] or item["yclid"] or item["purchase_id"]
    columns = ("kind", "id", "row", "identifier", "target", "status", "created_at", "error")
    _emit_page(out, args, page, columns)
    return 0


def _page(args: argparse.Namespace) -> dict[str, int]:
    return {"limit": args.limit, "offset": args.offset}


def _path(segment: str) -> str:
    """A user-given id as one path segment (a slash or '?' in it cannot reach another endpoint)."""
    from urllib.parse import quote

    return quote(segment, safe="")


def _emit(out: TextIO, args: argparse.Namespace, answer: Any, text: str) -> None:
    out.write(json.dumps(answer, ensure_ascii=False, indent=2) + "\n" if args.json else text)


def _emit_page(out: TextIO, args: argparse.Namespace, page: dict[str, Any], columns: Sequence[str]) -> None:
    _emit(out, args, page, _table(page["data"], columns))
    if not args.json:
        shown, total = len(page["data"]), page["pagination"]["total"]
        first = page["pagination"]["offset"] + 1 if shown else 0
        more = " (more: --offset)" if page["pagination"]["has_more"] else ""
        print(f"{first}-{first + shown - 1 if shown else 0} of {total}{more}", file=sys.stderr)


def _table(items: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Aligned columns with a header; the last column is not padded."""
    cells = [[_cell(item.get(column)) for column in columns] for item in items]
    widths = [max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]
    lines = []
    for row in [list(columns), *cells]:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # one line per item


if __name__ == "__main__":
    sys.exit(main())
