"""Goals of the Management API (``/management/v1/counter/{counterId}/goals``): the ``Target`` values
an offline-conversions file may use are the ``exact`` condition urls of the counter's action goals."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError

__all__ = ["CONDITION_TYPES", "GOALS", "GOAL_TYPES", "MAX_GOALS", "Goal", "GoalStore", "routes"]

log = logging.getLogger(__name__)

GOAL_TYPES = frozenset(
    {
        "url",
        "number",
        "step",
        "action",
        "phone",
        "email",
        "payment_system",
        "messenger",
        "file",
        "search",
        "social",
        "visit_duration",
    }
)
CONDITION_TYPES = frozenset(
    {
        "contain",
        "exact",
        "start",
        "regexp",
        "action",
        "regexp_action",
        "contain_action",
        "file",
        "all_files",
        "search",
        "social",
        "all_social",
        "messenger",
    }
)
#: goal types that need at least one condition
_NEEDS_CONDITIONS = frozenset({"url", "action"})
FLAGS = frozenset({"", "basket", "order"})
MAX_GOALS = 200
MAX_NAME = 255
COUNTER = r"/management/v1/counter/{counter_id:\d+}"


@dataclass
class Goal:
    id: int
    name: str
    type: str
    conditions: list[dict[str, str]] = field(default_factory=list)
    default_price: float = 0.0
    is_favorite: bool = False
    is_retargeting: int = 0
    flag: str = ""
    goal_source: str = "user"
    status: str = "Active"
    prev_goal_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def targets(self) -> set[str]:
        """CSV ``Target`` values that mean this goal."""
        if self.type != "action":
            return set()
        return {c["url"] for c in self.conditions if c.get("type") == "exact" and c.get("url")}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "is_retargeting": self.is_retargeting,
            "default_price": self.default_price,
            "goal_source": self.goal_source,
            "is_favorite": self.is_favorite,
            "prev_goal_id": self.prev_goal_id,
            "status": self.status,
            "flag": self.flag,
            "conditions": [dict(c) for c in self.conditions],
            **self.extra,
        }


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message)


def _conditions(raw: Any, goal_type: str) -> list[dict[str, str]]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _invalid("Goal field 'conditions' must be a list of {type, url}")
    conditions: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _invalid("Every goal condition must be an object with 'type' and 'url'")
        if item["type"] not in CONDITION_TYPES:
            raise _invalid(f"Unknown goal condition type '{item['type']}'")
        url = item.get("url", "")
        if not isinstance(url, str) or (goal_type in _NEEDS_CONDITIONS and not url):
            raise _invalid("Goal condition 'url' must be a non-empty string")
        conditions.append({"type": item["type"], "url": url})
    if goal_type in _NEEDS_CONDITIONS and not conditions:
        raise _invalid(f"A goal of type '{goal_type}' needs at least one condition")
    return conditions


class GoalStore:
    """Goals per counter (``app[GOALS]``); a counter gets ``defaults`` as action goals on first use."""

    def __init__(self, defaults: tuple[str, ...]) -> None:
        self.defaults = defaults
        self._goals: dict[int, list[Goal]] = {}
        self._ids = count(300_000_001)

    def for_counter(self, counter: int) -> list[Goal]:
        goals = self._goals.get(counter)
        if goals is None:
            goals = [
                Goal(next(self._ids), name, "action", [{"type": "exact", "url": name}])
                for name in self.defaults
            ]
            self._goals[counter] = goals
        return goals

    def targets(self, counter: int) -> set[str]:
        return set().union(*(goal.targets() for goal in self.for_counter(counter)))

    def add(self, counter: int, body: Any) -> Goal:
        """Validate a ``{"goal": {...}}`` body and add the goal."""
        if not isinstance(body, dict) or not isinstance(body.get("goal"), dict):
            raise _invalid('Request body must be {"goal": {...}}')
        raw: dict[str, Any] = body["goal"]
        name, goal_type = raw.get("name"), raw.get("type")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "missing_parameter", "Goal field 'name' is required")
        if len(name) > MAX_NAME:
            raise _invalid(f"Goal name must not exceed {MAX_NAME} characters")
        if not isinstance(goal_type, str) or goal_type not in GOAL_TYPES:
            raise _invalid(f"Wrong goal type {goal_type!r}; allowed: {', '.join(sorted(GOAL_TYPES))}")
        price = raw.get("default_price", 0)
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise _invalid("Goal field 'default_price' must be a non-negative number")
        flag = raw.get("flag") or ""
        if flag not in FLAGS:
            raise _invalid(f"Wrong goal flag {flag!r}; allowed: basket, order")
        goals = self.for_counter(counter)
        if len(goals) >= MAX_GOALS:
            raise ApiError(400, "limit_exceeded", f"A counter can have at most {MAX_GOALS} goals")
        goal = Goal(
            id=next(self._ids),
            name=name,
            type=goal_type,
            conditions=_conditions(raw.get("conditions"), goal_type),
            default_price=float(price),
            is_favorite=bool(raw.get("is_favorite", False)),
            is_retargeting=int(bool(raw.get("is_retargeting", 0))),
            flag=flag,
            extra={k: v for k, v in raw.items() if k in ("depth", "steps")},
        )
        goals.append(goal)
        log.info("counter %s: goal %s %r added", counter, goal.id, goal.name)
        return goal


GOALS = web.AppKey("goals", GoalStore)
routes = web.RouteTableDef()


@routes.get(COUNTER + "/goals")
async def list_goals(request: web.Request) -> web.Response:
    goals = request.app[GOALS].for_counter(int(request.match_info["counter_id"]))
    return web.json_response({"goals": [goal.to_json() for goal in goals]})


@routes.post(COUNTER + "/goals")
async def add_goal(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "Request body is not valid JSON") from None
    goal = request.app[GOALS].add(int(request.match_info["counter_id"]), body)
    return web.json_response({"goal": goal.to_json()})
