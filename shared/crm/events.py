"""A CRM event: one lead or deal change read from an amoCRM/Kommo or Bitrix24 webhook body.

Its `natural_key` is what makes a CRM's retry of the same event recognisable (issue 9): for amoCRM the
account id, entity, lead id, status id and `updated_at`; for Bitrix24 the portal's `member_id`, the event
name, the entity ID and `ts`. Ids are opaque strings. The readers below are shared by the two sources:
a value a body must carry correctly (an id, a timestamp, a price) that is malformed is a `FormError`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

from shared.crm.forms import FormError

Source = Literal["amocrm", "bitrix24"]
Entity = Literal["lead", "deal"]
MAX_ID_CHARS = 128
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last instant a datetime holds
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class CustomField:
    """One custom field of an amoCRM lead: `values` are its `[values][N][value]` texts (or bare
    `[values][N]`, as date fields are sent), `enums` the `[values][N][enum]` ids of list fields."""

    id: str | None
    name: str | None = None
    code: str | None = None
    values: tuple[str, ...] = ()
    enums: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrmEvent:
    """A lead or deal event. `account` is the amoCRM account id or the Bitrix24 member_id; `event` the
    amoCRM action (`status`, `add`, `update`) or the Bitrix24 event name; `occurred_at` is aware (UTC).
    Holds no credential: Bitrix24's application token is read separately (bitrix24.application_token)."""

    source: Source
    event: str
    account: str | None
    entity: Entity
    entity_id: str
    status_id: str | None = None
    pipeline_id: str | None = None
    price: Decimal | None = None
    occurred_at: dt.datetime | None = None
    account_domain: str | None = None  # amoCRM subdomain, Bitrix24 portal domain
    custom_fields: tuple[CustomField, ...] = ()

    @property
    def natural_key(self) -> str:
        """The event's identity across retries: amoCRM account + entity + id + status_id + updated_at,
        Bitrix24 member_id + event + ID + ts; parts percent-encoded and joined with ':'."""
        stamp = str(int(self.occurred_at.timestamp())) if self.occurred_at else ""
        if self.source == "amocrm":
            parts = [self.account, self.entity, self.entity_id, self.status_id, stamp]
        else:
            parts = [self.account, self.event, self.entity_id, stamp]
        return ":".join([self.source, *(quote(part or "", safe="") for part in parts)])

    @property
    def custom_fields_by_id(self) -> dict[str, tuple[str, ...]]:
        return {field.id: field.values for field in self.custom_fields if field.id is not None}

    @property
    def custom_fields_by_code(self) -> dict[str, tuple[str, ...]]:
        """The fields by code where they have one, else by name."""
        named: dict[str, tuple[str, ...]] = {}
        for field in self.custom_fields:
            key = field.code or field.name
            if key is not None:
                named.setdefault(key, field.values)
        return named

    def field_values(self, ref: str) -> tuple[str, ...] | None:
        """The values of the custom field `ref` names: by id, else by code, else by name (both
        case-insensitive); None when no field matches."""
        for field in self.custom_fields:
            if field.id == ref:
                return field.values
        folded = ref.casefold()
        for attribute in ("code", "name"):
            for field in self.custom_fields:
                value = getattr(field, attribute)
                if value is not None and value.casefold() == folded:
                    return field.values
        return None


def required_text(value: Any, what: str) -> str:
    """As `text`, for a value the body must carry."""
    found = text(value, what)
    if found is None:
        raise FormError(f"{what} is required")
    return found


def text(value: Any, what: str, *, max_chars: int = MAX_ID_CHARS) -> str | None:
    """A single value of the form as stripped text; None when absent or empty."""
    if isinstance(value, dict | list):
        raise FormError(f"{what} must be a single value, not a nested one")
    if value is not None and not isinstance(value, str):
        raise FormError(f"{what} must be text")
    stripped = (value or "").strip()
    if not stripped:
        return None
    if len(stripped) > max_chars:
        raise FormError(f"{what} is longer than {max_chars} characters")
    if _CONTROL.search(stripped):
        raise FormError(f"{what} must not contain control characters")
    return stripped


def timestamp(value: Any, what: str) -> dt.datetime | None:
    """A Unix timestamp in seconds, as the CRMs send it, as an aware UTC datetime; None when absent."""
    stamp = text(value, what, max_chars=20)
    if stamp is None:
        return None
    if not (stamp.isascii() and stamp.isdigit()) or int(stamp) > MAX_TIMESTAMP:
        raise FormError(f"{what} must be a Unix timestamp in seconds")
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC)


def price(value: Any, what: str) -> Decimal | None:
    """A decimal amount (`15000`, `1500.50`); None when absent or empty."""
    amount = text(value, what, max_chars=40)
    if amount is None:
        return None
    try:
        parsed = Decimal(amount)
    except InvalidOperation:
        parsed = None
    if parsed is None or not parsed.is_finite():
        raise FormError(f"{what} must be a number")
    return parsed


def mapping_of(value: Any, what: str) -> dict[str, Any]:
    """A nested block of the form (`account[...]`, `auth[...]`); {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormError(f"{what} must be {what}[<name>]=..., not a single value or a list")
    return value


def items_of(value: Any, what: str) -> list[tuple[str, Any]]:
    """The items of a numbered block (`leads[status][0]`, `leads[status][1]`) with their labels."""
    if isinstance(value, list):
        return [(f"{what}[{index}]", item) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return [(f"{what}[{_label(key)}]", item) for key, item in value.items()]
    raise FormError(f"{what} must be numbered: {what}[0][...]")


def _label(key: str) -> str:
    """A key of the body as shown in an error message: itself when short and plain, else '...'."""
    return key if _LABEL.fullmatch(key) else "..."
