"""Every foreign exception that can reach keyservice maps to a safe, coded error without its text, in the adapter
that meets it (errors.py itself imports no foreign library)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import grpc
import hvac.exceptions
import pytest
import sqlalchemy.exc

from keyservice import errors
from keyservice.store._base import DB_ERRORS
from keyservice.vault._call import VAULT_ERRORS

CANARY = "sk-canaryCANARYcanary0123456789abcdef"


def _all_subclasses(module: object, base: type[BaseException]) -> list[type[BaseException]]:
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass) if issubclass(obj, base)]


Code = grpc.StatusCode
# The status each hvac exception must become; a class hvac adds fails the test until it is decided here.
HVAC_CODES = {
    "InvalidPath": Code.NOT_FOUND, "Forbidden": Code.PERMISSION_DENIED, "PreconditionFailed": Code.ABORTED,
    "InvalidRequest": Code.FAILED_PRECONDITION, "UnsupportedOperation": Code.FAILED_PRECONDITION,
    "ParamValidationError": Code.FAILED_PRECONDITION,
    # Vault itself in trouble (sealed, down, throttling, our token refused): retryable for the caller.
    "Unauthorized": Code.UNAVAILABLE, "VaultDown": Code.UNAVAILABLE, "RateLimitExceeded": Code.UNAVAILABLE,
    "InternalServerError": Code.UNAVAILABLE, "BadGateway": Code.UNAVAILABLE, "UnexpectedError": Code.UNAVAILABLE,
    "VaultNotInitialized": Code.UNAVAILABLE, "VaultError": Code.UNAVAILABLE,
}


@pytest.mark.parametrize("exc_type", _all_subclasses(hvac.exceptions, hvac.exceptions.VaultError))
def test_every_hvac_exception_is_mapped_without_its_text(exc_type: type[BaseException]) -> None:
    ours = errors.translate(exc_type(f"response body with {CANARY}"), VAULT_ERRORS)
    assert ours is not None
    assert ours.code == HVAC_CODES[exc_type.__name__]
    assert CANARY not in str(ours) and CANARY not in ours.message


@pytest.mark.parametrize("exc_type", _all_subclasses(sqlalchemy.exc, sqlalchemy.exc.SQLAlchemyError))
def test_every_sqlalchemy_exception_is_mapped(exc_type: type[BaseException]) -> None:
    try:
        exc = exc_type(f"INSERT ... {CANARY}", {"p": CANARY}, Exception(CANARY))  # type: ignore[call-arg]
    except TypeError:
        exc = exc_type.__new__(exc_type)  # constructors vary; the mapping only looks at the class
        Exception.__init__(exc, f"statement {CANARY}")
    ours = errors.translate(exc, DB_ERRORS)
    assert ours is not None
    # A unique-key violation is the caller's duplicate; anything else the database does is retryable.
    expected = Code.ALREADY_EXISTS if issubclass(exc_type, sqlalchemy.exc.IntegrityError) else Code.UNAVAILABLE
    assert ours.code == expected
    assert CANARY not in ours.message


def test_errors_imports_no_foreign_library() -> None:
    source = Path(errors.__file__).read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "collections", "contextlib", "grpc"}


def test_translating_drops_text_and_chain() -> None:
    with pytest.raises(errors.PermissionDenied) as info:
        with errors.translating(VAULT_ERRORS):
            raise hvac.exceptions.Forbidden(f"permission denied, data: {CANARY}")
    assert CANARY not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_translating_leaves_our_errors_and_unknown_ones() -> None:
    with pytest.raises(errors.NotFound):
        with errors.translating(VAULT_ERRORS):
            raise errors.NotFound("nope")
    with pytest.raises(ZeroDivisionError):
        with errors.translating(DB_ERRORS):
            raise ZeroDivisionError


def test_invalid_argument_names_the_field() -> None:
    exc = errors.InvalidArgument("scope.org_id", "is required")
    assert exc.code == grpc.StatusCode.INVALID_ARGUMENT and exc.message.startswith("scope.org_id")
