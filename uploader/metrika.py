"""Metrika's offline-conversions API (upload, uploading status, goals) on the shared client base."""

from __future__ import annotations

from typing import Any

import aiohttp

from shared.metrika import MetrikaApi, MetrikaError, retry_policy

__all__ = ["ConversionsApi", "MetrikaError"]


class ConversionsApi(MetrikaApi):
    """One counter's offline-conversion calls. Idempotent reads are retried in process (briefly); an
    upload is sent again only after a 429 (refused before any work): whether an attempt that got no answer
    arrived is the caller's to check first."""

    api = "conversions"

    async def upload(self, id_type: str, csv_bytes: bytes, comment: str) -> dict[str, Any]:
        params = {"client_id_type": id_type, "comment": comment}
        # a 429 is a quota refusal before any work: that one is safe to send again at once
        async for attempt in retry_policy(self.attempts, self.backoff_max_s, _refused_for_quota):
            with attempt:
                form = aiohttp.FormData()  # a form is consumed by its request: one per attempt
                form.add_field("file", csv_bytes, filename="conversions.csv", content_type="text/csv")
                body = await self.send("POST", "/offline_conversions/upload", params=params, data=form)
        return _uploading(body)

    async def uploading(self, upload_id: str) -> dict[str, Any]:
        """One status query, no retry here: the poller schedules the next one."""
        return _uploading(await self.send("GET", f"/offline_conversions/uploading/{upload_id}"))

    async def find_by_comment(self, comment: str, page: int = 1000) -> dict[str, Any] | None:
        """The newest upload of this counter carrying `comment`, if Metrika has one."""
        offset, found = 0, None
        while True:
            body = await self.call(
                "GET", "/offline_conversions/uploadings", params={"limit": page, "offset": offset}
            )
            items = body.get("uploadings") or [] if isinstance(body, dict) else []
            for item in items:
                if isinstance(item, dict) and item.get("comment") == comment:
                    found = dict(item)
            if len(items) < page:
                return found
            offset += page

    async def goal_targets(self) -> set[str]:
        """Identifiers a CSV `Target` may use: the exact-match conditions of the counter's action goals."""
        body = await self.call("GET", "/goals")
        targets: set[str] = set()
        for goal in (body.get("goals") if isinstance(body, dict) else None) or []:
            for condition in goal.get("conditions") or []:
                if condition.get("type") == "exact" and condition.get("url"):
                    targets.add(str(condition["url"]))
        return targets


def _refused_for_quota(error: MetrikaError) -> bool:
    return error.status == 429


def _uploading(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("uploading"), dict):
        raise MetrikaError("answer without an `uploading` object", status=502)
    return dict(body["uploading"])
