"""A webhook's mapping from CRM events to offline conversions, and the pure function that applies it.

`map_event` gives either the row as the plain dict shared.conversions.check_row judges (so every row rule
applies to CRM rows unchanged) or `Ignored` with the reason: an event whose status matches no rule, or
that carries none of the identifiers the mapping names. Everything else (a date too old, a client id too
long, a price that is not a number) is left to the row rules, which report it on the row.

Where values come from: the event's own fields first (amoCRM: `status_id`, `price`, custom fields by id,
code or name), then `enriched_fields`, the entity as the CRM's API returns it (Bitrix24 `crm.deal.get` /
`crm.lead.get`: `STAGE_ID` or `STATUS_ID`, `OPPORTUNITY`, `CURRENCY_ID`, `DATE_MODIFY`, `UF_CRM_...`
codes; a key matched exactly, else case-insensitively).

- `target`: `target_by_status[status]`, the status id compared exactly (Bitrix24 stages of a deal
  pipeline other than the first are prefixed: `C1:WON`).
- `purchase_id`: the lead or deal id. `date_time`: the event's time (amoCRM `updated_at`, Bitrix24 `ts`),
  else `DATE_MODIFY`; ISO 8601 in UTC.
- `price`: `price_field` (default `price`: the lead's price, a deal's `OPPORTUNITY`) as a Decimal, or the
  text itself when it is not a number (the row rules then refuse it with the reason); `null` sends none.
- `currency`: the deal's `CURRENCY_ID` when it has one, else the mapping's `currency`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import conversions
from shared.crm.events import CrmEvent

T = TypeVar("T")
PRICE = "price"  # price_field's default: the lead price / the deal's OPPORTUNITY
_STATUS_KEYS = ("STAGE_ID", "STATUS_ID")  # a Bitrix24 deal's stage, a lead's status
_PRICE_KEY = "OPPORTUNITY"
_CURRENCY_KEY = "CURRENCY_ID"
_MODIFIED_KEY = "DATE_MODIFY"
_ID_FIELDS = (("client_id", "client_id_field"), ("user_id", "user_id_field"), ("yclid", "yclid_field"))

FieldRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Target = Annotated[str, AfterValidator(conversions.parse_target)]
Currency = Annotated[str, AfterValidator(conversions.parse_currency)]

_AMO_STATUS = re.compile(r"[0-9]{1,19}")
_BITRIX_STATUS = re.compile(r"[A-Z0-9_]{1,64}(?::[A-Z0-9_]{1,64})?")
_BITRIX_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _status_id(value: str) -> str:
    # either source's form here; each source's own is checked by CrmMapping.source_problems
    if not (_AMO_STATUS.fullmatch(value) or _BITRIX_STATUS.fullmatch(value)):
        raise ValueError(
            "status ids are amoCRM numbers (e.g. 142) or Bitrix24 ids (e.g. WON, C1:WON, UC_ABC123)"
        )
    return value


StatusId = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_status_id)]


class CrmMapping(BaseModel):
    """How a CRM event becomes a conversion: set on an amocrm or bitrix24 webhook, editable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_by_status: dict[StatusId, Target] = Field(min_length=1, max_length=500)
    client_id_field: FieldRef | None = None
    user_id_field: FieldRef | None = None
    yclid_field: FieldRef | None = None
    price_field: FieldRef | None = PRICE
    currency: Currency | None = None

    @model_validator(mode="after")
    def _an_identifier(self) -> CrmMapping:
        if not (self.client_id_field or self.user_id_field or self.yclid_field):
            raise ValueError("name at least one of client_id_field, user_id_field, yclid_field")
        return self

    def source_problems(self, source: str) -> list[tuple[tuple[str, ...], str]]:
        """(location within the mapping, reason) of each entry that does not fit `source`'s formats."""
        problems: list[tuple[tuple[str, ...], str]] = []
        if source == "amocrm":
            for status in self.target_by_status:
                if not _AMO_STATUS.fullmatch(status):
                    problems.append(
                        (("target_by_status", status), "amoCRM status ids are numbers, e.g. 142 (won)")
                    )
        elif source == "bitrix24":
            for status in self.target_by_status:
                if not _BITRIX_STATUS.fullmatch(status):
                    reason = "Bitrix24 status ids look like WON, C1:WON or UC_ABC123"
                    problems.append((("target_by_status", status), reason))
            for name in ("client_id_field", "yclid_field", "user_id_field", "price_field"):
                value = getattr(self, name)
                if value is not None and value != PRICE and not _BITRIX_FIELD.fullmatch(value):
                    reason = "Bitrix24 field codes are upper case, e.g. UF_CRM_1700000000 or OPPORTUNITY"
                    problems.append(((name,), reason))
        return problems


@dataclass(frozen=True)
class Ignored:
    """An event that makes no conversion, and why."""

    reason: str


def map_event(
    event: CrmEvent, mapping: CrmMapping, enriched_fields: Mapping[str, Any] | None = None
) -> dict[str, Any] | Ignored:
    """The conversion row of `event` under `mapping`, or why it makes none."""
    fields = enriched_fields or {}
    status = event.status_id or _first(_enriched(fields, key) for key in _STATUS_KEYS)
    if status is None:
        unfetched = event.source == "bitrix24" and not fields
        hint = " (a Bitrix24 event needs its deal or lead fetched first)" if unfetched else ""
        return Ignored(f"the {event.entity} has no status{hint}")
    target = mapping.target_by_status.get(status)
    if target is None:
        return Ignored(f"status {_shown(status)} matches no rule in target_by_status")
    row: dict[str, Any] = {}
    for name, setting in _ID_FIELDS:
        ref = getattr(mapping, setting)
        value = _value(event, fields, ref) if ref else None
        if value is not None:
            row[name] = value
    if not row:
        named = ", ".join(f"{getattr(mapping, s)!r}" for _, s in _ID_FIELDS if getattr(mapping, s))
        return Ignored(f"no identifier: the {event.entity} has no value in {named}")
    row["target"] = target
    row["purchase_id"] = event.entity_id
    when = event.occurred_at or _enriched_time(fields)
    if when is not None:
        row["date_time"] = when.isoformat()
    amount = _price(event, fields, mapping.price_field)
    if amount is not None:
        row["price"] = amount
    currency = _enriched(fields, _CURRENCY_KEY) or mapping.currency
    if currency is not None:
        row["currency"] = currency
    return row


def _price(event: CrmEvent, fields: Mapping[str, Any], ref: str | None) -> Decimal | str | None:
    if ref is None:
        return None
    if ref.casefold() == PRICE:
        if event.price is not None:
            return event.price
        text = _enriched(fields, _PRICE_KEY)
    else:
        text = _value(event, fields, ref)
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # the row rules refuse it, saying why


def _value(event: CrmEvent, fields: Mapping[str, Any], ref: str) -> str | None:
    """The first non-empty value of the field `ref`: the event's custom field, else the enriched one."""
    own = event.field_values(ref)
    if own:
        return own[0]
    return _enriched(fields, ref)


def _enriched(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None:
        folded = key.casefold()
        value = _first(v for k, v in fields.items() if isinstance(k, str) and k.casefold() == folded)
    return _plain(value)


def _plain(value: Any, *, top: bool = True) -> str | None:
    """A field value as text: a string or number itself, a Bitrix24 multi-field's `VALUE`
    (`[{"VALUE": "..."}]`), a list's first usable item; None for anything else or an empty one."""
    if isinstance(value, list) and top:
        return _first(_plain(item, top=False) for item in value)
    if isinstance(value, dict):
        value = value.get("VALUE", value.get("value"))
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return None


def _enriched_time(fields: Mapping[str, Any]) -> dt.datetime | None:
    text = _enriched(fields, _MODIFIED_KEY)
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(dt.UTC) if when.tzinfo else None


def _first(values: Iterable[T | None]) -> T | None:
    return next((value for value in values if value is not None), None)


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 64 and value.isprintable() else "given"
