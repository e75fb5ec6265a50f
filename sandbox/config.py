"""Configuration of the Yandex Metrika API sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

__all__ = ["DEFAULT_BITRIX_WEBHOOK_CODE", "DEFAULT_GOALS", "SandboxConfig"]

#: identifiers (``Target`` values) of the action goals every counter starts with
DEFAULT_GOALS: tuple[str, ...] = ("4plus", "purchase", "registration", "order_confirmed", "lead", "call")
#: the inbound-webhook code the Bitrix24 emulator accepts out of the box (any user id)
DEFAULT_BITRIX_WEBHOOK_CODE = "b24sandboxcode01"


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of the sandbox; defaults follow Yandex's documented limits.

    ``max_parallel``, ``rps`` (Logs API, per IP) and ``management_rps`` (other Management API calls,
    per IP) of 0 or less disable that quota.  ``conversion_processing_seconds`` is how long an
    offline-conversions upload takes to reach its final status (0: at once).
    ``unknown_visitor_ids`` are UserId/Yclid/PurchaseId values that never link.
    Bitrix24 REST emulator: ``bitrix_webhook_codes`` are the accepted inbound-webhook codes; its leaky
    bucket drains ``bitrix_rps`` requests a second and refuses past ``bitrix_burst`` (Bitrix24's
    documented 2 and 50 for non-Enterprise plans); ``bitrix_rps`` of 0 or less disables it.
    ``counter_zones`` sets counters' time zones (``GET /management/v1/counter/{id}``, the Logs API's
    "today", the day a conversion is linked on); the others follow ``sandbox.counters.default_zone``.
    """

    tokens: frozenset[str] = frozenset({"sandbox-token"})
    max_parallel: int = 3
    rps: int = 10
    management_rps: int = 30
    processing_seconds: float = 1.0
    rows_per_part: int = 200_000
    visits_per_day: int | None = None
    seed: int = 0
    storage_limit_bytes: int = 10 * 1024**3
    today: date | None = None
    conversion_processing_seconds: float = 2.0
    default_goals: tuple[str, ...] = DEFAULT_GOALS
    unknown_visitor_ids: frozenset[str] = frozenset()
    max_upload_bytes: int = 1024**3
    # issue 9: the Bitrix24 REST emulator (sandbox/bitrix24.py)
    bitrix_webhook_codes: frozenset[str] = frozenset({DEFAULT_BITRIX_WEBHOOK_CODE})
    bitrix_rps: float = 2.0
    bitrix_burst: int = 50
    # issue 12: counters' time zones (sandbox/counters.py): {counter: IANA zone}; others follow the
    # documented default rule
    counter_zones: Mapping[int, str] = field(default_factory=dict)
