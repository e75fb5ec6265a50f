"""A webhook's source (json, amoCRM/Kommo, Bitrix24) and which of its fields fit which source."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator

from shared.crm.mapping import CrmMapping

Source = Literal["json", "amocrm", "bitrix24"]
CRM_SOURCES: tuple[Source, ...] = ("amocrm", "bitrix24")
MAX_URL_CHARS = 2048
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


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
