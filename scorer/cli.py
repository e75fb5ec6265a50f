"""`metrika-score score --date D`: the seed's one-shot script, on the same scoring path as the service."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
from tqdm import tqdm

from scorer import model, pipeline
from scorer.logs_api import LogsApiError
from scorer.progress import Progress
from shared.settings import YANDEX_API_URL

SEED_FIELDS = ("visitId", "clientId", "dateTime", "visitDuration")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="metrika-score")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="find the level-4+ visits of one day")
    score.add_argument("--date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD, a past day")
    score.add_argument("--token", default=os.environ.get("METRIKA_TOKEN"), help="OAuth token (or env)")
    score.add_argument(
        "--counter", type=int, default=_env_int("METRIKA_COUNTER"), help="counter id (or METRIKA_COUNTER)"
    )
    score.add_argument("--logs-dir", type=Path, help="score downloaded TSV files instead")
    score.add_argument("--out", type=Path, help="output file (default level4_visits_<DATE>.json)")
    score.add_argument("--models-dir", type=Path, default=None, help="model artifacts dir")
    score.add_argument("--api-url", default=os.environ.get("METRIKA_API_URL", YANDEX_API_URL))
    return parser.parse_args(argv)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


class _Bar:
    def __init__(self) -> None:
        self.bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n_fmt}% [{elapsed}]", file=sys.stderr)

    async def report(self, percent: int, message: str) -> None:
        self.bar.set_description(message.ljust(18))
        self.bar.update(percent - self.bar.n)


async def _score(args: argparse.Namespace, models: model.Models) -> pd.DataFrame:
    bar = _Bar()
    try:
        if args.logs_dir is not None:
            outcome = await pipeline.score_files(args.logs_dir, models, None, Progress(bar.report))
        else:
            api = pipeline.LogsApiSettings(base_url=args.api_url)
            async with aiohttp.ClientSession() as session:
                outcome = await pipeline.run(
                    session, api, args.token, args.counter, args.date, models, Path.cwd(), bar.report
                )
        await bar.report(100, f"{len(outcome.visits)} of {outcome.total_visits}")
        return outcome.visits
    finally:
        bar.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.logs_dir is None:
        if not args.token:
            print("error: token is required (--token or METRIKA_TOKEN)", file=sys.stderr)
            return 2
        if not args.counter:
            print("error: counter is required (--counter or METRIKA_COUNTER)", file=sys.stderr)
            return 2
    if args.date >= dt.date.today():
        print("error: --date must be in the past: the Logs API has no data for today", file=sys.stderr)
        return 2
    try:
        models = model.load_models(args.models_dir)
        visits = asyncio.run(_score(args, models))
    except (LogsApiError, model.ModelMismatch, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = args.out or Path(f"level4_visits_{args.date.isoformat()}.json")
    records: list[dict[str, Any]] = [
        {"visitId": v, "clientId": c, "dateTime": d, "visitDuration": int(s)}
        for v, c, d, s in zip(*(visits[f] for f in SEED_FIELDS), strict=True)
    ]
    out.write_text(json.dumps(records, ensure_ascii=False, indent=2))
    print(f"{len(records)} level-4+ visits written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
