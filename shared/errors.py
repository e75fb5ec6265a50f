"""The few error kinds the services raise; the gateway maps them to HTTP, the consumer to ack/reject."""

from __future__ import annotations


class AppError(Exception):
    """Application error."""

    status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.__class__.__name__)

    @property
    def detail(self) -> str:
        return str(self.args[0])


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


class Conflict(AppError):
    """Conflict."""

    status = 409


class PayloadTooLarge(AppError):
    """Request body too large."""

    status = 413


class Permanent(AppError):
    """A message that can never be processed: rejected to the dead-letter queue."""


class Unavailable(AppError):
    """A dependency (Postgres, RabbitMQ, Metrika) is down for now: retried with backoff, never dead-lettered."""

    status = 503
