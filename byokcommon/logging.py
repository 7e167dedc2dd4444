"""Structured JSON logging, configured once per process, with key redaction as the last word before output.

`configure()` sets structlog's pipeline: contextvars first (the request interceptor binds request id, method
and peer), then level and timestamp, then the redaction processor, then JSON. The stdlib loggers of httpx,
httpcore, hvac and urllib3 are held at WARNING because they print URLs and headers in clear.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from byokcommon.redaction import redact_value

# botocore's signer logs the canonical request, session token included, at DEBUG; msal and google.auth log token
# exchanges.
_NOISY_LIBRARIES = ("httpx", "httpcore", "hvac", "urllib3", "requests", "grpc", "alembic", "sqlalchemy",
                    "botocore", "msal", "google.auth")


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask key-shaped values and sensitive fields in every event."""
    return redact_value(event_dict)


def _drop_exception_text(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Keep only the exception's type: foreign exception text (hvac, SQLAlchemy) can carry secrets."""
    exc = event_dict.pop("exc_info", None)
    if exc:
        if exc is True:
            exc = sys.exc_info()
        if isinstance(exc, BaseException):
            event_dict["exc_type"] = type(exc).__name__
        elif isinstance(exc, tuple) and exc[0] is not None:
            event_dict["exc_type"] = exc[0].__name__
    return event_dict


class _RedactingFilter(logging.Filter):
    """Redacts stdlib records (libraries' own logs) and strips their tracebacks' text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_value(record.getMessage())
        record.args = None
        if record.exc_info:
            record.msg = f"{record.msg} ({record.exc_info[0].__name__ if record.exc_info[0] else 'error'})"
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str = "info", *, service: str) -> None:
    """Configure structlog and the stdlib root logger once, for `service`."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_exception_text,
        redact_processor,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
