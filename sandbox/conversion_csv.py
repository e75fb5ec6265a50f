"""Parsing and validating an offline-conversions CSV file the way the Management API does.

Whole-file problems raise 400 ``invalid_uploading``. A row with an empty identifier or ``Target`` is
kept but not valid: it counts in ``source_quantity`` and not in ``line_quantity``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sandbox.errors import ApiError

__all__ = ["CLIENT_ID_TYPES", "ID_COLUMNS", "ConversionRow", "ParsedConversions", "parse_conversions"]

#: client_id_type -> the identifier column it needs. Yandex documents the PurchaseId column; the value
#: PURCHASE_ID is not in its client_id_type reference (unverified), so it is emulated by analogy.
CLIENT_ID_TYPES: dict[str, str] = {
    "CLIENT_ID": "ClientId",
    "USER_ID": "UserId",
    "YCLID": "Yclid",
    "PURCHASE_ID": "PurchaseId",
}
#: every identifier column Yandex documents; a file carries exactly one
ID_COLUMNS: tuple[str, ...] = tuple(CLIENT_ID_TYPES.values())
REQUIRED_COLUMNS: tuple[str, ...] = ("Target", "DateTime")
OPTIONAL_COLUMNS: tuple[str, ...] = ("Price", "Currency")
_CANONICAL = {name.lower(): name for name in ID_COLUMNS + REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
_UNIX_SECONDS = re.compile(r"^\d{1,12}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True)
class ConversionRow:
    """One data row; ``values`` maps the header names as sent (trimmed) to the raw field text."""

    line: int
    values: dict[str, str]
    visitor: str
    target: str
    timestamp: int

    @property
    def valid(self) -> bool:
        return bool(self.visitor) and bool(self.target)


@dataclass(frozen=True)
class ParsedConversions:
    header: tuple[str, ...]
    rows: list[ConversionRow]

    @property
    def source_quantity(self) -> int:
        return len(self.rows)

    @property
    def line_quantity(self) -> int:
        return sum(row.valid for row in self.rows)


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_uploading", message)


def _header(raw: list[str], client_id_type: str) -> dict[str, int]:
    """Canonical column name -> index; checks the identifier column against ``client_id_type``."""
    columns: dict[str, int] = {}
    for index, name in enumerate(raw):
        name = name.strip()
        if not name:
            raise _bad(f"Line 1: column {index + 1} of the header has no name")
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            allowed = ", ".join(_CANONICAL.values())
            raise _bad(f"Line 1: unknown column '{name}'; allowed columns: {allowed}")
        if canonical in columns:
            raise _bad(f"Line 1: column '{canonical}' appears more than once")
        columns[canonical] = index
    expected = CLIENT_ID_TYPES[client_id_type]
    ids = [name for name in ID_COLUMNS if name in columns]
    if len(ids) > 1:
        raise _bad(f"Line 1: the header mixes identifier columns {', '.join(ids)}; exactly one is allowed")
    if not ids:
        raise _bad(
            f"Line 1: the header has no identifier column; client_id_type={client_id_type} needs '{expected}'"
        )
    if ids[0] != expected:
        raise _bad(
            f"Line 1: client_id_type={client_id_type} needs an '{expected}' column, the header has '{ids[0]}'"
        )
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise _bad(f"Line 1: required column '{name}' is missing")
    return columns


def _timestamp(text: str, line: int, now: float) -> int:
    value = text.strip()
    if not _UNIX_SECONDS.match(value):
        raise _bad(f"Line {line}: DateTime '{text}' is not a Unix timestamp in seconds")
    timestamp = int(value)
    if timestamp > now:
        raise _bad(f"Line {line}: DateTime {timestamp} is in the future")
    return timestamp


def _check_price(text: str, line: int) -> None:
    value = text.strip()
    if not value:
        return
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise _bad(
            f"Line {line}: Price '{text}' is not a number (use '.' as the decimal separator)"
        ) from None
    if not price.is_finite():
        raise _bad(f"Line {line}: Price '{text}' is not a number (use '.' as the decimal separator)")
    if price < 0:
        raise _bad(f"Line {line}: Price '{text}' is negative")


def _check_currency(text: str, line: int) -> None:
    value = text.strip()
    if value and not _CURRENCY.match(value):
        raise _bad(f"Line {line}: Currency '{text}' is not a 3-letter ISO 4217 code")


def parse_conversions(data: bytes, client_id_type: str, now: float) -> ParsedConversions:
    """Parse a UTF-8, comma-separated, RFC 4180 file whose first line is the header.

    ``now`` (Unix seconds) bounds ``DateTime``. Line numbers in messages count file lines from 1
    (the header); a quoted field spanning lines is reported at the line where its row starts.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(f"The file is not valid UTF-8 (byte {exc.start})") from None
    if not text or text.isspace():
        raise _bad("The file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[ConversionRow] = []
    try:
        raw_header = next(reader, None)
        if not raw_header:
            raise _bad("Line 1: the first line must hold the column names")
        header = tuple(name.strip() for name in raw_header)
        columns = _header(raw_header, client_id_type)
        id_index = columns[CLIENT_ID_TYPES[client_id_type]]
        price, currency = columns.get("Price"), columns.get("Currency")
        line = reader.line_num + 1
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                line = reader.line_num + 1
                continue  # blank line
            if len(fields) != len(header):
                raise _bad(f"Line {line}: {len(fields)} fields, but the header has {len(header)}")
            timestamp = _timestamp(fields[columns["DateTime"]], line, now)
            if price is not None:
                _check_price(fields[price], line)
            if currency is not None:
                _check_currency(fields[currency], line)
            rows.append(
                ConversionRow(
                    line=line,
                    values=dict(zip(header, fields, strict=True)),
                    visitor=fields[id_index].strip(),
                    target=fields[columns["Target"]].strip(),
                    timestamp=timestamp,
                )
            )
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _bad(f"Line {reader.line_num}: malformed CSV: {exc}") from None
    if not rows:
        raise _bad("The file has no data lines after the header")
    return ParsedConversions(header, rows)
