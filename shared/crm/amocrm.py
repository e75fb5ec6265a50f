"""amoCRM/Kommo account webhooks: the lead events of a parsed form body (shared.crm.forms.parse_form).

What is read (keys as they arrive; `<action>` is `status`, `add` or `update`, `N` numbers the leads of
one POST, which can carry several, also under several actions):

- `account[id]`, `account[subdomain]` (the `account[...]` block the newer format sends on every hook);
  a lead's own `account_id` stands in for a missing `account[id]` (the older format has only that).
- `leads[<action>][N][id]` (required), `status_id`, `pipeline_id`, `price` (empty: none), and the event's
  time: `updated_at`, else the older `last_modified`, else `created_at` / `date_create`, in Unix seconds.
- `leads[<action>][N][custom_fields][M][id|name|code]` with `[values][K][value]` and `[values][K][enum]`,
  or a bare `[values][K]` (date fields are sent that way).

Everything else is left alone: other entities (contacts, companies, tasks, talks), other lead actions
(`delete`, `restore`, `responsible`, `note`), tags and user ids. A body with no lead event of these kinds
gives an empty list; a lead without an id, or with a malformed status, price or timestamp, is a
`FormError`. Custom fields are read tolerantly: a part missing or of the wrong shape is skipped.

Sources: the format page https://www.amocrm.ru/developers/content/crm_platform/webhooks-format (RU) and
https://www.amocrm.com/developers/content/api/webhooks (EN): "POST ... {"entity":{"action":{"0":{...}}}}";
real bodies captured from amoCRM's own client (User-Agent `amoCRM-WebHook-client/1.0`) in
Bolid1/zapier_build `app/tests/status_lead_catch_hook.js`, `update_lead_catch_hook.js`,
`add_lead_catch_hook.js`; a complete `leads[status]` body with enum and bare date values in a public C#
unit test (`WebApiTests/BuildTree`); Kommo bodies with `account[id]`, `created_at`/`updated_at` and
`custom_fields[N][code]` in public Kommo handlers. See ../shared/research/peers.md section 3.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.crm import events
from shared.crm.events import CrmEvent, CustomField
from shared.crm.forms import FormError

ACTIONS = ("status", "add", "update")
# the event's time, best first: the newer format's updated_at, the older one's last_modified, then creation
_TIME_FIELDS = ("updated_at", "last_modified", "created_at", "date_create")


def amocrm_events(form: Mapping[str, Any]) -> list[CrmEvent]:
    """The lead events of one amoCRM/Kommo webhook body, in the order the body lists them."""
    account = events.mapping_of(form.get("account"), "account")
    account_id = events.text(account.get("id"), "account[id]")
    subdomain = events.text(account.get("subdomain"), "account[subdomain]", max_chars=255)
    leads = form.get("leads")
    if leads is None:
        return []
    if not isinstance(leads, dict):
        raise FormError("leads must be leads[<action>][<n>][...]")
    found: list[CrmEvent] = []
    for action, block in leads.items():
        if action not in ACTIONS:
            continue
        for label, lead in events.items_of(block, f"leads[{action}]"):
            found.append(_lead(lead, action, label, account_id, subdomain))
    return found


def _lead(lead: Any, action: str, label: str, account_id: str | None, subdomain: str | None) -> CrmEvent:
    if not isinstance(lead, dict):
        raise FormError(f"{label} must be {label}[<field>]=..., not a single value or a list")
    when = None
    for name in _TIME_FIELDS:
        when = events.timestamp(lead.get(name), f"{label}[{name}]")
        if when is not None:
            break
    return CrmEvent(
        source="amocrm",
        event=action,
        account=account_id or events.text(lead.get("account_id"), f"{label}[account_id]"),
        entity="lead",
        entity_id=events.required_text(lead.get("id"), f"{label}[id]"),
        status_id=events.text(lead.get("status_id"), f"{label}[status_id]"),
        pipeline_id=events.text(lead.get("pipeline_id"), f"{label}[pipeline_id]"),
        price=events.price(lead.get("price"), f"{label}[price]"),
        occurred_at=when,
        account_domain=subdomain,
        custom_fields=tuple(_custom_fields(lead.get("custom_fields"))),
    )


def _custom_fields(block: Any) -> list[CustomField]:
    fields: list[CustomField] = []
    for item in _entries(block):
        if not isinstance(item, dict):
            continue
        field_id, name, code = (_scalar(item.get(key)) for key in ("id", "name", "code"))
        if field_id is None and name is None and code is None:
            continue
        values: list[str] = []
        enums: list[str] = []
        for entry in _entries(item.get("values")):
            if isinstance(entry, dict):
                value, enum = _scalar(entry.get("value")), _scalar(entry.get("enum"))
            else:
                value, enum = _scalar(entry), None
            if value is not None:
                values.append(value)
            if enum is not None:
                enums.append(enum)
        fields.append(CustomField(field_id, name, code, tuple(values), tuple(enums)))
    return fields


def _entries(block: Any) -> list[Any]:
    if isinstance(block, list):
        return block
    if isinstance(block, dict):
        return list(block.values())
    return []


def _scalar(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None
