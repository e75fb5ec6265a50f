"""CRM webhook bodies built from the documented formats (see shared/crm/amocrm.py and bitrix24.py)."""

from __future__ import annotations

from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
UPDATED_AT = 1772280000  # 2026-02-28T12:00:00Z


def amo_lead(action: str, index: int, lead_id: str, **fields: str) -> list[tuple[str, str]]:
    prefix = f"leads[{action}][{index}]"
    defaults = {
        "id": lead_id,
        "name": "Заказ с сайта",
        "status_id": "142",
        "old_status_id": "20067736",
        "price": "15000",
        "responsible_user_id": "2079676",
        "last_modified": str(UPDATED_AT),
        "modified_user_id": "2079718",
        "created_user_id": "2076025",
        "date_create": str(UPDATED_AT - 3600),
        "created_at": str(UPDATED_AT - 3600),
        "updated_at": str(UPDATED_AT),
        "pipeline_id": "9217056",
        "account_id": "17769199",
    } | fields
    return [(f"{prefix}[{name}]", value) for name, value in defaults.items()]


def amo_custom_fields(action: str, index: int) -> list[tuple[str, str]]:
    """A list field (value + enum), a tracking field with a code, a date field sent as a bare value."""
    prefix = f"leads[{action}][{index}][custom_fields]"
    return [
        (f"{prefix}[0][id]", "66339"),
        (f"{prefix}[0][name]", "Источник"),
        (f"{prefix}[0][values][0][value]", "Сайт"),
        (f"{prefix}[0][values][0][enum]", "139517"),
        (f"{prefix}[1][id]", "4001"),
        (f"{prefix}[1][name]", "Yandex ClientID"),
        (f"{prefix}[1][code]", "_YM_UID"),
        (f"{prefix}[1][values][0][value]", "175085690441127503"),
        (f"{prefix}[2][id]", "72333"),
        (f"{prefix}[2][name]", "Дата проведения"),
        (f"{prefix}[2][values][0]", "1542067200"),
    ]


AMO_ACCOUNT = [
    ("account[subdomain]", "example"),
    ("account[id]", "29085955"),
    ("account[_links][self]", "https://example.amocrm.ru"),
]


def amo_body(*parts: list[tuple[str, str]], encoding: str = "utf-8") -> bytes:
    pairs = [pair for part in parts for pair in part]
    return urlencode(pairs, encoding=encoding).encode("ascii")


def amo_status_body() -> bytes:
    """One status change (to 142, won) with custom fields, and the account block."""
    return amo_body(amo_lead("status", 0, "10701093"), amo_custom_fields("status", 0), AMO_ACCOUNT)


def amo_three_leads_body() -> bytes:
    return amo_body(
        amo_lead("status", 0, "101"),
        amo_custom_fields("status", 0),
        amo_lead("status", 1, "102", status_id="143"),
        amo_lead("status", 2, "103"),
        amo_custom_fields("status", 2),
        AMO_ACCOUNT,
    )


def bitrix_body(event: str = "ONCRMDEALUPDATE", entity_id: str = "759", ts: str = "1772280000") -> bytes:
    return urlencode(
        [
            ("event", event),
            ("event_handler_id", "201"),
            ("data[FIELDS][ID]", entity_id),
            ("ts", ts),
            ("auth[domain]", "example.bitrix24.ru"),
            ("auth[client_endpoint]", "https://example.bitrix24.ru/rest/"),
            ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
            ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553"),
            ("auth[application_token]", "51856fefc120afa4b628cc82d3935cce"),
        ]
    ).encode("ascii")
