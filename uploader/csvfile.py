"""Yandex's offline-conversions CSV: one identifier column per file, DateTime in Unix seconds.

Yandex documents exactly one identifier column per file, matching `client_id_type`; so a row's
purchase_id travels only in a PurchaseId file (rows identified by it), never beside another identifier."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal

import asyncpg

ID_COLUMNS = {"CLIENT_ID": "ClientId", "USER_ID": "UserId", "YCLID": "Yclid", "PURCHASE_ID": "PurchaseId"}


def build(id_type: str, rows: Iterable[asyncpg.Record]) -> bytes:
    """UTF-8 CSV with the header `<IdColumn>,Target,DateTime,Price,Currency` (RFC 4180 quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([ID_COLUMNS[id_type], "Target", "DateTime", "Price", "Currency"])
    for row in rows:
        writer.writerow(
            [
                row["identifier"],
                row["target"],
                int(row["date_time"].timestamp()),
                _price(row["price"]),
                row["currency"] or "",
            ]
        )
    return out.getvalue().encode()


def _price(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")
