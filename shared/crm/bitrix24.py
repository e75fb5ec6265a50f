"""Bitrix24 outbound webhooks (REST events): the event of a parsed form body (shared.crm.forms.parse_form).

What is read: `event` (`ONCRMDEALADD`, `ONCRMDEALUPDATE`, `ONCRMLEADADD`, `ONCRMLEADUPDATE`, any case),
`data[FIELDS][ID]` (required), `ts` (Unix seconds), `auth[member_id]`, `auth[domain]`, and, only through
`application_token` / `application_token_matches`, `auth[application_token]`. Bitrix24 sends only the id:
stage, amount and user fields come later from `crm.deal.get` / `crm.lead.get` (a consumer's work), so the
event carries none of them. Another event name is an `UnsupportedEvent`; OAuth tokens an application's
events carry (`auth[access_token]`, `auth[refresh_token]`) are never read.

Sources: https://apidocs.bitrix24.com/api-reference/crm/deals/events/on-crm-deal-update.html (the payload
printed as JSON; on the wire it is the same keys as a form), https://dev.1c-bitrix.ru/rest_help/rest_sum/
events/events.php, https://apidocs.bitrix24.ru/api-reference/events/safe-event-handlers.html (checking
`application_token`), and handlers reading `data[FIELDS][ID]` from the form (PavelM87/receiver
`receiver.py`; yarbshk/pybitrix24's `parse_qs_deep`). See ../shared/research/peers.md section 3.2.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from shared.crm import events
from shared.crm.events import CrmEvent, Entity
from shared.crm.forms import FormError

EVENTS: dict[str, Entity] = {
    "ONCRMDEALADD": "deal",
    "ONCRMDEALUPDATE": "deal",
    "ONCRMLEADADD": "lead",
    "ONCRMLEADUPDATE": "lead",
}
MAX_TOKEN_CHARS = 256


class UnsupportedEvent(FormError):
    """A well-formed Bitrix24 event this service does not handle (e.g. ONCRMDEALDELETE)."""


def bitrix24_event(form: Mapping[str, Any]) -> CrmEvent:
    """The deal or lead event of one Bitrix24 outbound-webhook body."""
    name = events.required_text(form.get("event"), "event").upper()
    entity = EVENTS.get(name)
    if entity is None:
        shown = repr(name) if len(name) <= 64 and name.replace("_", "").isalnum() else "given"
        raise UnsupportedEvent(
            f"the Bitrix24 event {shown} is not handled; expected one of {', '.join(EVENTS)}"
        )
    data = events.mapping_of(form.get("data"), "data")
    fields = events.mapping_of(data.get("FIELDS"), "data[FIELDS]")
    auth = events.mapping_of(form.get("auth"), "auth")
    return CrmEvent(
        source="bitrix24",
        event=name,
        account=events.text(auth.get("member_id"), "auth[member_id]"),
        entity=entity,
        entity_id=events.required_text(fields.get("ID"), "data[FIELDS][ID]"),
        occurred_at=events.timestamp(form.get("ts"), "ts"),
        account_domain=events.text(auth.get("domain"), "auth[domain]", max_chars=255),
    )


def application_token(form: Mapping[str, Any]) -> str | None:
    """`auth[application_token]`, for the caller to compare in constant time; None when absent or not a
    plain short text. Never log it."""
    auth = form.get("auth")
    token = auth.get("application_token") if isinstance(auth, dict) else None
    if not isinstance(token, str):
        return None
    token = token.strip()
    return token if 0 < len(token) <= MAX_TOKEN_CHARS else None


def application_token_matches(form: Mapping[str, Any], expected: str) -> bool:
    """True when the body's `auth[application_token]` equals `expected`, compared in constant time."""
    token = application_token(form)
    return token is not None and hmac.compare_digest(token.encode(), expected.encode())
