"""The key service's exceptions, each carrying the gRPC status it maps to.

Hierarchy::

    KeyServiceError                 INTERNAL (never raised bare with library text)
    ├── InvalidArgument             INVALID_ARGUMENT   bad input; `field` names the culprit
    ├── NotFound                    NOT_FOUND
    ├── AlreadyExists               ALREADY_EXISTS
    ├── Aborted                     ABORTED            check-and-set lost a race
    ├── FailedPrecondition          FAILED_PRECONDITION state forbids it (e.g. transit min version)
    ├── PermissionDenied            PERMISSION_DENIED  wrong role, caller not bound, Vault refused
    ├── ResourceExhausted           RESOURCE_EXHAUSTED too much concurrent work
    └── Unavailable                 UNAVAILABLE        a dependency is down; safe to retry
        ├── VaultUnavailable
        └── DatabaseUnavailable

Foreign exceptions (hvac, SQLAlchemy, httpx) are translated where they enter, by `translate_foreign()`.
Their text is never kept: hvac puts whole Vault response bodies, which can hold decrypted secrets, into
its messages, and SQLAlchemy's include bound parameters. Only the exception's class name is logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import httpx
import hvac.exceptions
import sqlalchemy.exc


class KeyServiceError(Exception):
    """Base class. `message` is safe to send to callers and to log."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(KeyServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(KeyServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KeyServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(KeyServiceError):
    code = grpc.StatusCode.ABORTED


class FailedPrecondition(KeyServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(KeyServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(KeyServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(KeyServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class VaultUnavailable(Unavailable):
    def __init__(self, message: str = "vault is unavailable") -> None:
        super().__init__(message)


class DatabaseUnavailable(Unavailable):
    def __init__(self, message: str = "database is unavailable") -> None:
        super().__init__(message)


# Each foreign exception class, most specific first, and what it becomes. Messages are fixed strings:
# the foreign text is dropped on purpose (see the module docstring).
_HVAC: list[tuple[type[BaseException], tuple[type[KeyServiceError], str | None]]] = [
    (hvac.exceptions.InvalidPath, (NotFound, "secret not found in vault")),
    (hvac.exceptions.Forbidden, (PermissionDenied, "vault refused the operation (policy)")),
    (hvac.exceptions.Unauthorized, (VaultUnavailable, "vault authentication failed")),
    (hvac.exceptions.VaultDown, (VaultUnavailable, "vault is sealed or down")),
    (hvac.exceptions.RateLimitExceeded, (VaultUnavailable, "vault is rate limiting")),
    (hvac.exceptions.InternalServerError, (VaultUnavailable, "vault internal error")),
    (hvac.exceptions.BadGateway, (VaultUnavailable, "vault bad gateway")),
    (hvac.exceptions.PreconditionFailed, (Aborted, "vault check-and-set failed")),
    (hvac.exceptions.InvalidRequest, (FailedPrecondition, "vault rejected the request")),
    (hvac.exceptions.UnsupportedOperation, (FailedPrecondition, "vault does not support the operation")),
    (hvac.exceptions.ParamValidationError, (FailedPrecondition, "vault parameter validation failed")),
    (hvac.exceptions.UnexpectedError, (VaultUnavailable, "vault answered unexpectedly")),
    (hvac.exceptions.VaultError, (VaultUnavailable, "vault error")),
]
_SQL: list[tuple[type[BaseException], tuple[type[KeyServiceError], str | None]]] = [
    (sqlalchemy.exc.IntegrityError, (AlreadyExists, "a record with the same key already exists")),
    (sqlalchemy.exc.OperationalError, (DatabaseUnavailable, None)),
    (sqlalchemy.exc.InterfaceError, (DatabaseUnavailable, None)),
    (sqlalchemy.exc.TimeoutError, (DatabaseUnavailable, "database connection pool exhausted")),
    (sqlalchemy.exc.DBAPIError, (DatabaseUnavailable, "database error")),
    (sqlalchemy.exc.SQLAlchemyError, (DatabaseUnavailable, "database error")),
]
_HTTP: list[tuple[type[BaseException], tuple[type[KeyServiceError], str | None]]] = [
    (httpx.TimeoutException, (Unavailable, "upstream timed out")),
    (httpx.TransportError, (Unavailable, "upstream unreachable")),
    (httpx.HTTPError, (Unavailable, "upstream error")),
]
# requests is what hvac speaks HTTP with; its connection errors mean Vault is unreachable.
try:  # pragma: no branch
    import requests.exceptions as _requests_exc

    _HVAC.append((_requests_exc.RequestException, (VaultUnavailable, "vault is unreachable")))
except ImportError:  # pragma: no cover
    pass

FOREIGN_MAP: list[tuple[type[BaseException], tuple[type[KeyServiceError], str | None]]] = _HVAC + _SQL + _HTTP


def translate(exc: BaseException) -> KeyServiceError | None:
    """The KeyServiceError a foreign exception stands for, or None if it is not a known foreign one."""
    for foreign, ours in FOREIGN_MAP:
        if isinstance(exc, foreign):
            cls, message = ours
            return cls(message) if message is not None else cls()
    return None


@contextmanager
def translate_foreign() -> Iterator[None]:
    """Turn hvac, SQLAlchemy and httpx exceptions into KeyServiceError; `from None` drops their text
    (and their chained context, which holds the same text) from tracebacks too."""
    try:
        yield
    except KeyServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated or re-raised below
        ours = translate(exc)
        if ours is None:
            raise
        raise ours from None

