"""Metrika's offline-conversions API (upload, uploading status, goals) on the shared client base."""

from __future__ import annotations

from typing import Any

import aiohttp

from shared.metrika import MetrikaApi, MetrikaError

__all__ = ["ConversionsApi", "MetrikaError"]


class ConversionsApi(MetrikaApi):
    """One counter's offline-conversion calls. Only idempotent reads are retried in process (briefly);
    an upload is sent once per call: whether a lost attempt arrived is the caller's to check first."""

    async def upload(self, id_type: str, csv_bytes: bytes, comment: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("file", csv_bytes, filename="conversions.csv", content_type="text/csv")
        params = {"client_id_type": id_type, "comment": comment}
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


def _uploading(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("uploading"), dict):
        raise MetrikaError("answer without an `uploading` object", status=502)
    return dict(body["uploading"])
