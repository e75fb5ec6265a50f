"""Where a CRM webhook finds a conversion in an amoCRM/Kommo or Bitrix24 event: the `mapping` of a webhook.

`target_by_status` says which lead/deal statuses are conversions and of which goal (amoCRM status ids are
numbers, e.g. 142 "won"; Bitrix24 stage/status ids are upper case, e.g. WON, C1:WON, UC_ABC123). The
`*_field` entries name the CRM field that holds the identifier (an amoCRM custom field id or code, a
Bitrix24 field code such as UF_CRM_1700000000); `price_field` defaults to the lead price (amoCRM `price`,
Bitrix24 `OPPORTUNITY`); `currency` is the ISO 4217 code sent with the price (none: Metrika's default).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared import conversions

Source = Literal["json", "amocrm", "bitrix24"]
CRM_SOURCES: tuple[Source, ...] = ("amocrm", "bitrix24")
MAX_RULES = 500
MAX_URL_CHARS = 2048
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces

_AMO_STATUS = re.compile(r"[0-9]{1,19}")
_BITRIX_STATUS = re.compile(r"[A-Z0-9_]{1,64}(?::[A-Z0-9_]{1,64})?")
_BITRIX_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

_FIELD_REF = re.compile(r"[A-Za-z0-9_]{1,64}")


def _status_id(value: str) -> str:
    # either source's form here; each source's own is checked by CrmMapping.source_problems
    if not (_AMO_STATUS.fullmatch(value) or _BITRIX_STATUS.fullmatch(value)):
        raise ValueError(
            "status ids are amoCRM numbers (e.g. 142) or Bitrix24 ids (e.g. WON, C1:WON, UC_ABC123)"
        )
    return value


def _field_ref(value: str) -> str:
    if not _FIELD_REF.fullmatch(value):
        raise ValueError(
            "must name a CRM field: an amoCRM custom field id or code, or a Bitrix24 field code such as "
            "UF_CRM_1700000000 (letters, digits and _, at most 64)"
        )
    return value


StatusKey = Annotated[str, AfterValidator(_status_id)]
FieldRef = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_field_ref)]
GoalTarget = Annotated[str, AfterValidator(conversions.parse_target)]
Currency = Annotated[str, AfterValidator(conversions.parse_currency)]


class CrmMapping(BaseModel):
    """A CRM webhook's `mapping`, as given at creation or by PATCH."""

    model_config = ConfigDict(extra="forbid")

    target_by_status: dict[StatusKey, GoalTarget] = Field(min_length=1, max_length=MAX_RULES)
    client_id_field: FieldRef | None = None
    yclid_field: FieldRef | None = None
    user_id_field: FieldRef | None = None
    price_field: FieldRef | None = None  # None: the lead price (amoCRM `price`, Bitrix24 `OPPORTUNITY`)
    currency: Currency | None = None

    def source_problems(self, source: Source) -> list[tuple[tuple[str, ...], str]]:
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
                    problems.append(
                        (
                            ("target_by_status", status),
                            "Bitrix24 status ids look like WON, C1:WON or UC_ABC123",
                        )
                    )
            for name in ("client_id_field", "yclid_field", "user_id_field", "price_field"):
                value = getattr(self, name)
                if value is not None and not _BITRIX_FIELD.fullmatch(value):
                    problems.append(
                        (
                            (name,),
                            "Bitrix24 field codes are upper case, e.g. UF_CRM_1700000000 or OPPORTUNITY",
                        )
                    )
        return problems


def webhook_problems(
    source: Source, mapping: CrmMapping | None, *, mapping_given: bool, bitrix_only: list[str]
) -> list[str]:
    """Why fields given for a webhook do not fit its `source`: a mapping only for (and always for) the CRM
    sources, `bitrix_only` (the names of the Bitrix24-only fields given) only for bitrix24."""
    problems: list[str] = []
    if source == "json":
        if mapping is not None:
            problems.append("mapping: only amocrm and bitrix24 webhooks take a mapping")
    elif mapping is None and mapping_given:
        problems.append(f"mapping: {source} webhooks need a mapping with target_by_status")
    elif mapping is not None:
        for loc, reason in mapping.source_problems(source):
            problems.append(f"mapping.{'.'.join(loc)}: {reason}")
    if source != "bitrix24":
        problems += [f"{name}: only bitrix24 webhooks take it" for name in bitrix_only]
    return problems


def http_url(value: str) -> str:
    """An absolute http(s) URL (the Bitrix24 portal's inbound-webhook URL), as given."""
    text = value.strip()
    try:
        parts = urlsplit(text) if len(text) <= MAX_URL_CHARS and _URL_CHARS.fullmatch(text) else None
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL, e.g. https://example.bitrix24.ru/rest/1/abc123xyz/")
    return text


HttpUrlText = Annotated[str, AfterValidator(http_url)]
