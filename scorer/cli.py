"""`metrika-score score --date D`: the seed's one-shot script, on the same scoring path as the service (the
API's commands are in scorer.api_cli)."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError
from tqdm import tqdm

from scorer import api_cli, arrays, model, scoring
from scorer.progress import STAGES
from shared.settings import Settings

SEED_FIELDS = ("visitId", "clientId", "dateTime", "visitDuration")
_JSON_ROWS = 1 << 16  # records written at a time
_QUOTE, _NOTHING = arrays.scalar('"'), arrays.scalar("")


def _parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    """Flags over the environment (METRIKA_TOKEN, METRIKA_COUNTER, METRIKA_API_URL, MODELS_DIR, as the
    services read it, through Settings)."""
    token = settings.metrika_token.get_secret_value() if settings.metrika_token else None
    parser = argparse.ArgumentParser(prog="metrika-score")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("rekey", help="re-encrypt every stored Metrika token under the first TOKEN_ENCRYPTION_KEY")
    score = sub.add_parser("score", help="find the level-4+ visits of one day")
    score.add_argument("--date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD, a past day")
    score.add_argument("--token", default=token, help="OAuth token (or METRIKA_TOKEN)")
    score.add_argument(
        "--counter", type=int, default=settings.metrika_counter, help="counter id (or METRIKA_COUNTER)"
    )
    score.add_argument("--logs-dir", type=Path, help="score downloaded TSV files instead")
    score.add_argument("--out", type=Path, help="output file (default level4_visits_<DATE>.json)")
    score.add_argument(
        "--models-dir",
        type=Path,
        default=settings.models_dir or None,
        help="model artifacts dir (or MODELS_DIR)",
    )
    score.add_argument("--api-url", default=settings.metrika_api_url, help="(or METRIKA_API_URL)")
    calibrate = sub.add_parser(
        "calibrate",
        help="re-choose the thresholds from labelled visits of your counter",
        description="Score the TSVs in --logs-dir, join --labels (a TSV with columns visitID and level, "
        "level 0..5) by visitID, choose each device class's threshold for --target-precision on the "
        "labelled visits, and write a models directory (artifacts + level4_thresholds.json) to --out.",
    )
    calibrate.add_argument("--logs-dir", type=Path, required=True, help="visits*.tsv and hits*.tsv")
    calibrate.add_argument("--labels", type=Path, required=True, help="TSV with header visitID<TAB>level")
    calibrate.add_argument(
        "--target-precision",
        type=_fraction,
        help="precision to reach in each class (default scorer.calibration.DEFAULT_TARGET)",
    )
    calibrate.add_argument(
        "--models-dir",
        type=Path,
        default=settings.models_dir or None,
        help="the models to calibrate (or MODELS_DIR; default the shipped ones)",
    )
    calibrate.add_argument(
        "--out", type=Path, default=Path("models_calibrated"), help="output dir (default ./models_calibrated)"
    )
    return parser.parse_args(argv)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _calibrate(args: argparse.Namespace) -> int:
    from scorer import calibration  # loads pandas: only for this command (see scorer.arrays)

    target = calibration.DEFAULT_TARGET if args.target_precision is None else args.target_precision
    try:
        results = calibration.calibrate(args.logs_dir, args.labels, args.out, args.models_dir, target)
    except (model.ModelMismatch, OSError, ValueError) as exc:  # LabelsError, TsvError, ... are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"target precision {target} (measured on the labelled visits themselves)")
    for r in results:
        how = "from the labels" if r.source == "labels" else "kept: too few labelled visits of this class"
        print(
            f"  {r.device_class:8s} threshold {r.threshold:.6f} (was {r.previous:.6f}, {how}): "
            f"precision {r.precision:.3f}, recall {r.recall:.3f} on {r.labelled} labelled visits "
            f"({r.positives} of level {calibration.LEVEL}+)"
        )
    print(f"written to {args.out}: point MODELS_DIR or --models-dir at it")
    return 0


class _Bar:
    def __init__(self) -> None:
        self.bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n_fmt}% [{elapsed}]", file=sys.stderr)

    def show(self, percent: int, message: str) -> None:
        self.bar.set_description(message.ljust(18))
        self.bar.update(percent - self.bar.n)

    async def report(self, percent: int, message: str) -> None:
        self.show(percent, message)


def _score_files(args: argparse.Namespace, models: model.Models) -> pa.Table:
    """--logs-dir: the files scored on this thread (no event loop needed), the output as an Arrow table."""
    bar = _Bar()
    try:
        visits, total = scoring.score_table(
            args.logs_dir, models, lambda stage: bar.show(STAGES[stage][0], stage)
        )
        bar.show(100, f"{len(visits)} of {total}")
        return visits
    finally:
        bar.bar.close()


async def _download_and_score(args: argparse.Namespace, settings: Settings, models: model.Models) -> pa.Table:
    import aiohttp  # the Logs API only: a --logs-dir run starts without it

    from scorer import pipeline

    bar = _Bar()
    try:
        settings = settings.model_copy(update={"metrika_api_url": args.api_url})
        dest = Path(tempfile.mkdtemp(prefix=f"{args.counter}-{args.date}-", dir=Path.cwd()))
        async with aiohttp.ClientSession() as session:
            outcome = await pipeline.run(
                session, settings, args.token, args.counter, args.date, models, dest, bar.report
            )
        bar.show(100, f"{len(outcome.visits)} of {outcome.total_visits}")
        return pa.Table.from_pandas(outcome.visits, preserve_index=False)
    finally:
        bar.bar.close()


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if not given or given[0] not in api_cli.LOCAL_COMMANDS:  # the API's commands, and the overall --help
        return api_cli.main(given)
    # What the imports made lives as long as the process: keep the garbage collector from walking it
    # again and again while a day is scored (a few per cent of the run).
    gc.freeze()
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"error: bad environment: {problems}", file=sys.stderr)
        return 2
    args = _parse_args(argv, settings)
    if args.command == "rekey":
        from shared import crypto

        return crypto.run_rekey(settings)
    if args.command == "calibrate":
        return _calibrate(args)
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
    errors: tuple[type[Exception], ...] = (model.ModelMismatch, OSError, ValueError)
    if args.logs_dir is None:
        from shared.metrika import MetrikaError

        errors += (MetrikaError,)
    try:
        models = model.load_models(args.models_dir)
        if args.logs_dir is not None:
            visits = _score_files(args, models)
        else:
            import asyncio

            visits = asyncio.run(_download_and_score(args, settings, models))
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = args.out or Path(f"level4_visits_{args.date.isoformat()}.json")
    write_seed_json(visits, out)
    print(f"{len(visits)} level-4+ visits written to {out}", file=sys.stderr)
    return 0


def write_seed_json(visits: pa.Table, out: Path) -> None:
    """The seed's output file: ``json.dumps(records, ensure_ascii=False, indent=2)`` of SEED_FIELDS
    records, built column-wise by Arrow a slice at a time and written as bytes (a Python dict per
    visit took longer than scoring them, and one string of all of them as much memory again)."""
    with out.open("wb") as fh:
        if visits.num_rows == 0:
            fh.write(b"[]")
            return
        fh.write(b"[\n")
        for lo in range(0, visits.num_rows, _JSON_ROWS):
            records = _records(visits.slice(lo, _JSON_ROWS))  # each ends with ",\n": cut after the last
            last = lo + _JSON_ROWS >= visits.num_rows
            fh.write(records[: -len(b",\n")] if last else records)
        fh.write(b"\n]")


def _records(visits: pa.Table) -> memoryview:
    parts: list[Any] = []
    for i, name in enumerate(SEED_FIELDS):
        column = visits.column(name)
        value = pc.cast(column, pa.string())
        if not pa.types.is_integer(column.type):
            # Quoted as it is when nothing in it needs a JSON escape (ids and times never do).
            if pc.all(pc.match_substring_regex(value, r'^[^"\\\x00-\x1f]*$')).as_py():
                value = pc.binary_join_element_wise(_QUOTE, value, _QUOTE, _NOTHING)
            else:
                value = pa.array([json.dumps(v, ensure_ascii=False) for v in value.to_pylist()])
        parts += [arrays.scalar(('  {\n    "' if i == 0 else ',\n    "') + name + '": '), value]
    parts.append(arrays.scalar("\n  },\n"))
    records = pc.binary_join_element_wise(*parts, _NOTHING).combine_chunks()
    # A string array's values lie back to back in its data buffer: the records, one after another.
    _, offsets, data = records.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[records.offset : records.offset + len(records) + 1]
    return memoryview(data)[int(bounds[0]) : int(bounds[-1])]


if __name__ == "__main__":
    sys.exit(main())
