"""The key service's exceptions, each carrying the gRPC status it maps to.

Hierarchy::

    KeyServiceError                 INTERNAL (never raised bare with library text)
    ├── InvalidArgument             INVALID_ARGUMENT   bad input; `field` names the culprit
    ├── NotFound                    NOT_FOUND
    ├── AlreadyExists               ALREADY_EXISTS
    ├── Aborted                     ABORTED            check-and-set lost a race
    ├── FailedPrecondition          FAILED_PRECONDITION state forbids it (e.g. transit min version)
    │   └── CredentialRejected                         a cloud's token service refused the stored credential
    ├── PermissionDenied            PERMISSION_DENIED  wrong role, caller not bound, Vault refused
    ├── ResourceExhausted           RESOURCE_EXHAUSTED too much concurrent work
    └── Unavailable                 UNAVAILABLE        a dependency is down; safe to retry
        ├── VaultUnavailable
        └── DatabaseUnavailable

This module imports no foreign library (as httpx's `_exceptions.py`): each adapter maps its library's
exceptions where it meets them, with `translating(table)` and a table of its own (the Vault adapter hvac's and
requests', the store SQLAlchemy's, each derivation in keyservice/derive/ its cloud library's; verify handles
httpx's itself). Their text is never kept: hvac puts whole
Vault response bodies, which can hold decrypted secrets, into its messages, and SQLAlchemy's include bound
parameters. Only the exception's class name is logged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc


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


class CredentialRejected(FailedPrecondition):
    """AWS STS, Google's or Entra ID's token endpoint refused the stored long-lived credential (a wrong or deleted
    key, a wrong secret, a role it may not assume): the cloud's equivalent of a provider's confirmed 401. `reason`
    is the cloud's error code (`InvalidClientTokenId`, `invalid_grant`, `AADSTS7000215`, …), checked to be a
    short word, never its message text."""

    def __init__(self, cloud: str, reason: str) -> None:
        super().__init__(f"{cloud} refused the stored credential ({reason})")
        self.cloud = cloud
        self.reason = reason


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


# A foreign library's exception classes, most specific first, and what each becomes (a fixed message, or the
# class's default): each adapter keeps its own table (keyservice/vault/_call.py, keyservice/store/_base.py) and
# translates where the library is met. Messages are fixed strings: the foreign text is dropped on purpose.
ForeignErrors = Sequence[tuple[type[BaseException], tuple[type[KeyServiceError], str | None]]]


def translate(exc: BaseException, table: ForeignErrors) -> KeyServiceError | None:
    """The KeyServiceError `exc` stands for under `table`, or None if the table does not know it."""
    for foreign, ours in table:
        if isinstance(exc, foreign):
            cls, message = ours
            return cls(message) if message is not None else cls()
    return None


@contextmanager
def translating(table: ForeignErrors) -> Iterator[None]:
    """Turn the exceptions `table` knows into KeyServiceError; `from None` drops their text (and their chained
    context, which holds the same text) from tracebacks too. Ours and unknown ones pass unchanged."""
    try:
        yield
    except KeyServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated or re-raised below
        ours = translate(exc, table)
        if ours is None:
            raise
        raise ours from None
