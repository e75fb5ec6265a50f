"""A CRM webhook request as its events: the one reading shared by the gateway (to refuse a malformed
body), the uploader (to map it) and the replay (to tell what a mapping makes of it)."""

from __future__ import annotations

from typing import Any

from shared.crm import forms
from shared.crm.amocrm import amocrm_events
from shared.crm.bitrix24 import bitrix24_event
from shared.crm.events import CrmEvent


def read_request(source: str, body: bytes, content_type: str | None) -> tuple[dict[str, Any], list[CrmEvent]]:
    """(the parsed form, its events) of an `amocrm` or `bitrix24` webhook's body; forms.FormError if it is
    not one."""
    form = forms.parse_form(body, content_type)
    return form, amocrm_events(form) if source == "amocrm" else [bitrix24_event(form)]
