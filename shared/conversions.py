"""The rules one offline conversion must pass before it is stored; the same for every way rows arrive.

A row is a JSON object with:

- `target` (required): the goal identifier, 1..255 characters, no control characters.
- `date_time` (required): ISO 8601 with a time of day, e.g. `2025-07-01T12:34:56` or `...+03:00` / `...Z`.
  A time without a zone is in the counter's time zone (`Rules.tz`: read from the Management API by
  shared.counter_zones; COUNTER_TIMEZONE while it cannot be). It may not be in the future (60 s of clock
  skew allowed) nor older than `max_age`: Metrika links a conversion only to a recent visit, so an old one
  would never be attributed.
- an identifier: one of `client_id`, `user_id`, `yclid`: opaque strings of 1..128 characters, or
  non-negative JSON integers (kept as their exact decimal text, within the same length; a fraction or
  exponent cannot carry an exact id and is refused). With several, the first of client_id, user_id, yclid
  is used; every one sent must still be valid. A row with none of them but a `purchase_id` is identified by
  it (id type PURCHASE_ID, Metrika's `PurchaseId` column); beside another identifier, `purchase_id` is
  only kept as an attribute.
- `price` (optional): a number from 0 to MAX_PRICE (10^12). `currency` (optional): an active ISO 4217
  code, case-insensitive. `purchase_id`: 1..255 characters (or a non-negative JSON integer).

`null` or an empty string means "not given" for the optional fields and the identifiers. Other fields are
ignored. Every field parser raises ValueError with the reason, so pydantic validators can reuse them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

from shared.currencies import ISO_4217

T = TypeVar("T")
IdType = Literal["CLIENT_ID", "USER_ID", "YCLID", "PURCHASE_ID"]
# the order decides which identifier a row uses when it carries several
ID_FIELDS: tuple[tuple[str, IdType], ...] = (
    ("client_id", "CLIENT_ID"),
    ("user_id", "USER_ID"),
    ("yclid", "YCLID"),
)
# a row with none of ID_FIELDS is identified by its purchase_id (Metrika's PurchaseId)
PURCHASE_ID: IdType = "PURCHASE_ID"
NO_IDENTIFIER = "one of client_id, user_id, yclid, purchase_id is required"
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 255
# far above any real purchase, far below what numeric arithmetic and Metrika's CSV would choke on
MAX_PRICE = 10**12
CLOCK_SKEW = dt.timedelta(seconds=60)
DEFAULT_MAX_AGE_DAYS = 90
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # either of the above
# fromisoformat also reads a bare date as midnight; a conversion needs its time of day
_HAS_TIME = re.compile(r"^\d{4}-?\d{2}-?\d{2}[T ]\d", re.IGNORECASE)
# the characters of an ISO 8601 date and time; fromisoformat stops reading at a NUL and accepted the rest
_ISO_CHARS = re.compile(r"[0-9Tt :.,+\-Zz]+")


@dataclass(frozen=True)
class Rules:
    """What a row is judged against: the zone of naive times, the current instant, the oldest allowed."""

    tz: dt.tzinfo
    now: dt.datetime
    max_age: dt.timedelta = dt.timedelta(days=DEFAULT_MAX_AGE_DAYS)

    def too_old(self, when: dt.datetime) -> bool:
        return when < self.now - self.max_age

    def too_old_reason(self) -> str:
        return (
            f"is more than {self.max_age.days} days old; Metrika links a conversion only to a recent "
            "visit, so it would never be attributed"
        )

    @classmethod
    def current(cls, tz: dt.tzinfo, max_age_days: int = DEFAULT_MAX_AGE_DAYS) -> Rules:
        return cls(tz, dt.datetime.now(dt.UTC), dt.timedelta(days=max_age_days))


@dataclass(frozen=True)
class RowError:
    index: int
    field: str | None  # None: the row as a whole
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to make, and thousands are made per request
class Conversion:
    """A valid row; `date_time` is aware (UTC)."""

    index: int
    id_type: IdType
    identifier: str
    target: str
    date_time: dt.datetime
    price: Decimal | None = None
    currency: str | None = None
    purchase_id: str | None = None

    def record(self, batch_id: uuid.UUID) -> tuple[Any, ...]:
        """The row for batches.store (CONVERSION_COLUMNS), waiting for upload."""
        return (
            batch_id, self.index, self.id_type, self.identifier, self.target, self.date_time, self.price,
            self.currency, self.purchase_id, "pending", None,
        )  # fmt: skip


@dataclass(frozen=True)
class Rejected:
    """An invalid row; its identifier is kept when it was readable, so the status can point at it."""

    index: int
    errors: tuple[RowError, ...]
    id_type: IdType | None = None
    identifier: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(f"{e.field}: {e.reason}" if e.field else e.reason for e in self.errors)

    def record(self, batch_id: uuid.UUID) -> tuple[Any, ...]:
        """The row stored with status 'error' when a partial batch is accepted."""
        return (
            batch_id, self.index, self.id_type, self.identifier, None, None, None, None, None, "error",
            self.reason,
        )  # fmt: skip


@dataclass(frozen=True)
class Checked:
    valid: list[Conversion]
    rejected: list[Rejected]

    @property
    def errors(self) -> list[RowError]:
        return [error for row in self.rejected for error in row.errors]


def check_rows(raws: Sequence[Any], rules: Rules) -> Checked:
    valid: list[Conversion] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(raws):
        row = check_row(raw, index, rules)
        if isinstance(row, Conversion):
            valid.append(row)
        else:
            rejected.append(row)
    return Checked(valid, rejected)


def check_row(raw: Any, index: int, rules: Rules) -> Conversion | Rejected:
    if type(raw) is dict:
        usual = _usual_row(raw, rules)
        if usual is not None:
            return Conversion(index, *usual)
    return _judge_row(raw, index, rules)


def _usual_row(raw: dict[str, Any], rules: Rules) -> tuple[Any, ...] | None:
    """The fields of a valid row whose values all have their usual JSON types, found with a few checks
    per field; None for anything else, which _judge_row then judges (and explains) field by field.
    Must accept nothing _judge_row refuses, and give the same values (tests compare the two)."""
    get = raw.get
    id_type: IdType | None = None
    identifier = ""
    for name, kind in ID_FIELDS:
        value = get(name)
        if value is None:
            continue
        if type(value) is not str:
            return None
        text = value.strip()
        if not text:
            continue  # not given
        if len(text) > MAX_ID_CHARS or _UNSTORABLE.search(text):
            return None
        if id_type is None:
            id_type, identifier = kind, text
    target = _usual_text(get("target"), MAX_TEXT_CHARS)
    when = get("date_time")
    if not target or type(when) is not str:
        return None
    try:
        moment = parse_date_time(when, rules)
    except ValueError:
        return None
    price = get("price")
    if price is not None:
        if type(price) is float and 0 <= price <= MAX_PRICE:
            price = Decimal(repr(price))  # as parse_price reads a float
        elif type(price) is int and 0 <= price <= MAX_PRICE:
            price = Decimal(price)
        else:
            return None
    currency = get("currency")
    if currency is not None:
        if type(currency) is not str:
            return None
        currency = currency.strip().upper() or None
        if currency is not None and currency not in ISO_4217:
            return None
    purchase_id = get("purchase_id")
    if purchase_id is not None:
        if type(purchase_id) is not str:
            return None
        purchase_id = purchase_id.strip() or None  # empty: not given
        if purchase_id is not None and not _usual_text(purchase_id, MAX_TEXT_CHARS):
            return None
    if id_type is None:
        if purchase_id is None:
            return None
        id_type, identifier = PURCHASE_ID, purchase_id
    return id_type, identifier, target, moment, price, currency, purchase_id


def _usual_text(value: Any, max_chars: int) -> str:
    """A str value stripped, or "" when it is not a str, empty, too long or not storable."""
    if type(value) is not str:
        return ""
    text = value.strip()
    if len(text) > max_chars or _UNSTORABLE.search(text):
        return ""
    return text


def _judge_row(raw: Any, index: int, rules: Rules) -> Conversion | Rejected:
    if not isinstance(raw, dict):
        return Rejected(index, (RowError(index, None, "each conversion must be a JSON object"),))
    errors: list[RowError] = []

    def field(name: str, parse: Callable[..., Any], *args: Any) -> Any:
        try:
            return parse(raw.get(name), *args)
        except ValueError as exc:
            errors.append(RowError(index, name, str(exc)))
            return None

    ids = [(id_type, field(name, parse_identifier)) for name, id_type in ID_FIELDS if given(raw.get(name))]
    if not ids and not given(raw.get("purchase_id")):
        errors.append(RowError(index, "client_id", NO_IDENTIFIER))
    target = field("target", parse_target)
    when = field("date_time", parse_date_time, rules)
    price = field("price", optional(parse_price))
    currency = field("currency", optional(parse_currency))
    purchase_id = field("purchase_id", optional(parse_purchase_id))
    if not ids and purchase_id is not None:
        ids = [(PURCHASE_ID, purchase_id)]
    id_type, identifier = ids[0] if ids else (None, None)
    if errors:
        return Rejected(index, tuple(errors), id_type if identifier else None, identifier)
    assert id_type is not None and identifier is not None
    return Conversion(index, id_type, identifier, target, when, price, currency, purchase_id)


def given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    def parse_optional(value: Any) -> T | None:
        return parse(value) if given(value) else None

    return parse_optional


def parse_target(value: Any) -> str:
    return _text(value, MAX_TEXT_CHARS, required=True)


def parse_identifier(value: Any) -> str:
    return _text(value, MAX_ID_CHARS)


def parse_purchase_id(value: Any) -> str:
    return _text(value, MAX_TEXT_CHARS)


def parse_date_time(value: Any, rules: Rules) -> dt.datetime:
    if not given(value):
        raise ValueError("is required")
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string, e.g. 2025-07-01T12:34:56")
    text = value.strip()
    try:
        if len(text) > 64 or not _HAS_TIME.match(text) or not _ISO_CHARS.fullmatch(text):
            raise ValueError
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=rules.tz)
        when = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            "is not an ISO 8601 date and time, e.g. 2025-07-01T12:34:56 (counter time zone) "
            "or 2025-07-01T09:34:56Z"
        ) from None
    if when > rules.now + CLOCK_SKEW:
        raise ValueError("is in the future; Metrika refuses conversions that have not happened yet")
    if rules.too_old(when):
        raise ValueError(rules.too_old_reason())
    return when


def parse_price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        # repr is the shortest text that reads back as the same float: what the sender wrote
        value = Decimal(repr(value))
    price = Decimal(value)
    if not price.is_finite():
        raise ValueError("must be a finite number")
    if price < 0:
        raise ValueError("must not be negative")
    if price > MAX_PRICE:
        raise ValueError(f"must not exceed {MAX_PRICE} (10^12)")
    return price


def parse_currency(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a 3-letter ISO 4217 code, e.g. RUB")
    code = value.strip().upper()
    if code not in ISO_4217:
        shown = f"'{code}' " if len(code) <= 8 and code.isascii() and code.isalnum() else ""
        raise ValueError(f"{shown}is not an active ISO 4217 currency code, e.g. RUB, USD, EUR")
    return code


def _text(value: Any, max_chars: int, *, required: bool = False) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("is required" if required else "must not be empty")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        if value.bit_length() > 4 * max_chars:  # more digits than max_chars (str() of a huge int is slow)
            raise ValueError(f"is longer than {max_chars} characters")
        text = str(value)  # a JSON integer is exact at any size: keep its digits, under the same limit
    elif isinstance(value, float | Decimal):
        raise ValueError("must be a string (a number with a fraction or exponent cannot carry an exact id)")
    elif not isinstance(value, str):
        raise ValueError("must be a string")
    else:
        text = value.strip()
    if len(text) > max_chars:
        raise ValueError(f"is longer than {max_chars} characters")
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    if _SURROGATE.search(text):  # a JSON \ud800 escape decodes to a lone surrogate, which is not storable
        raise ValueError("must be valid Unicode text")
    return text
