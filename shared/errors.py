"""The few error kinds the services raise; the gateway maps them to HTTP, the consumer to ack/reject."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiormq import exceptions as amqp


class AppError(Exception):
    """Application error.

    The one error type of the services: the gateway answers it (gateway/middlewares.py, and nowhere else)
    as `{"detail": detail, **extra}` with `status` and `headers`; the consumer rejects or retries on it.
    `detail` is a sentence, or for a 422 the list of validation problems.
    """

    status = 500
    # the rest of the request may still be on its way: answer, then close the connection
    close_connection = False

    def __init__(
        self,
        detail: str | list[dict[str, Any]] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail or self.__doc__ or self.__class__.__name__)
        if status is not None:
            self.status = status
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def detail(self) -> str | list[dict[str, Any]]:
        detail: str | list[dict[str, Any]] = self.args[0]
        return detail


class BadRequest(AppError):
    """Bad request."""

    status = 400


class Unauthorized(AppError):
    """Missing or invalid API key."""

    status = 401


class Forbidden(AppError):
    """Forbidden."""

    status = 403


class NotFound(AppError):
    """Not found."""

    status = 404


class RequestTimeout(AppError):
    """The request body did not arrive in time."""

    status = 408
    close_connection = True


class Conflict(AppError):
    """Conflict."""

    status = 409


class PayloadTooLarge(AppError):
    """Request body too large."""

    status = 413


class Unprocessable(AppError):
    """Invalid request: `detail` lists the problems as `{"loc", "msg", "type"}` (pydantic's shape)."""

    status = 422


class TooManyRequests(AppError):
    """Too many requests."""

    status = 429

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Permanent(AppError):
    """A message that can never be processed: rejected to the dead-letter queue."""


class Unavailable(AppError):
    """A dependency (Postgres, RabbitMQ, Metrika) is down for now: retried with backoff, never
    dead-lettered."""

    status = 503


# file-system errors are OSErrors too, but a missing file or a refused path is a bug, not an outage
_LOCAL_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
_UNAVAILABLE = (
    Unavailable,
    # sockets: refused, reset, unreachable, timed out (TimeoutError is an OSError), DNS
    OSError,
    # Postgres: the server is starting, shutting down, full, or the connection broke
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError, ConnectionFailureError
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.InterfaceError,  # "connection is closed" when the pool's connection was lost
    # 55000 on connecting: the database takes no connections for now (ALTER DATABASE ... ALLOW_CONNECTIONS
    # false, a maintenance window); its subclasses are lock waits (55P03) and objects in use (55006)
    asyncpg.ObjectNotInPrerequisiteStateError,
    # what asyncpg raises for a query on a connection the server terminated while it sat idle in the
    # pool (the FATAL arrived, the socket is not closed yet): "cannot switch to state ...; another
    # operation is in progress"
    asyncpg.InternalClientError,
    # RabbitMQ: the connection closed, or a channel is used while it is being reopened
    amqp.AMQPConnectionError,
    amqp.ChannelInvalidStateError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means a dependency (Postgres, RabbitMQ, Metrika) is down for now, so the work
    should wait and be retried, never be given up; a group counts when every exception in it does."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_unavailable(inner) for inner in exc.exceptions)
    if isinstance(exc, _LOCAL_OS_ERRORS) or isinstance(exc, asyncpg.DataError):
        return False  # a local file error, or a query given bad input (DataError is an InterfaceError)
    return isinstance(exc, _UNAVAILABLE)
