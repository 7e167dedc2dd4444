"""The call wrapper: what every Vault operation goes through (see `VaultCaller`), and the translation of
hvac's and requests' exceptions into keyservice's, where they are met."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import hvac
import hvac.exceptions
import requests
import requests.adapters
import structlog

from keyservice import errors
from keyservice.vault.auth import TokenKeeper
from keyservice.vault.settings import VaultSettings

log = structlog.get_logger("keyservice.vault")


T = TypeVar("T")


# Backoff between retries: exponential from 50 ms, capped at 1 s, with jitter so that the threads of a
# service (and the replicas of a deployment) do not hammer a recovering Vault in lockstep.
_BACKOFF_BASE_SECONDS = 0.05


_BACKOFF_CAP_SECONDS = 1.0


# Connections kept open to Vault; above requests' default of 10 because the service's thread pool is larger.
_POOL_SIZE = 32


# What is worth retrying: Vault's 5xx (503 = sealed or standby) and failures to talk to it at all.
_RETRYABLE: tuple[type[BaseException], ...] = (
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultDown,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


# What makes the client move to the next of several Vault addresses: the node cannot be reached, or it is
# sealed (hvac's VaultDown, a 503 from a sealed node or a standby that has lost its active node).
_FAIL_OVER: tuple[type[BaseException], ...] = (requests.exceptions.ConnectionError, hvac.exceptions.VaultDown)


# hvac's exceptions (and requests', which hvac speaks HTTP with) and what they become, most specific first
# (keyservice/errors.py). The text is dropped: hvac puts whole Vault response bodies into its messages.
VAULT_ERRORS: errors.ForeignErrors = [
    (hvac.exceptions.InvalidPath, (errors.NotFound, "secret not found in vault")),
    (hvac.exceptions.Forbidden, (errors.PermissionDenied, "vault refused the operation (policy)")),
    (hvac.exceptions.Unauthorized, (errors.VaultUnavailable, "vault authentication failed")),
    (hvac.exceptions.VaultDown, (errors.VaultUnavailable, "vault is sealed or down")),
    (hvac.exceptions.RateLimitExceeded, (errors.VaultUnavailable, "vault is rate limiting")),
    (hvac.exceptions.InternalServerError, (errors.VaultUnavailable, "vault internal error")),
    (hvac.exceptions.BadGateway, (errors.VaultUnavailable, "vault bad gateway")),
    (hvac.exceptions.PreconditionFailed, (errors.Aborted, "vault check-and-set failed")),
    (hvac.exceptions.InvalidRequest, (errors.FailedPrecondition, "vault rejected the request")),
    (hvac.exceptions.UnsupportedOperation, (errors.FailedPrecondition, "vault does not support the operation")),
    (hvac.exceptions.ParamValidationError, (errors.FailedPrecondition, "vault parameter validation failed")),
    (hvac.exceptions.UnexpectedError, (errors.VaultUnavailable, "vault answered unexpectedly")),
    (hvac.exceptions.VaultError, (errors.VaultUnavailable, "vault error")),
    (requests.exceptions.RequestException, (errors.VaultUnavailable, "vault is unreachable")),
]


class VaultCaller:
    """One hvac client and the wrapper every Vault call goes through: a fresh token, retries with jittered backoff
    on 5xx, sealed and connection errors, failover between addresses, one re-login on an invalid token, hvac's
    and requests' exceptions translated (VAULT_ERRORS), and one observe() report per operation."""

    def __init__(self, settings: VaultSettings, *,
                 observe: Callable[[str, float, str], None] | None = None) -> None:
        settings.validate()
        self._settings = settings
        self._observe = observe
        session = requests.Session()
        # Retries are ours (bounded, jittered, 5xx/connection only): keep urllib3's off.
        pool = requests.adapters.HTTPAdapter(pool_maxsize=_POOL_SIZE, max_retries=0)
        session.mount("http://", pool)
        session.mount("https://", pool)
        verify: str | bool = settings.ca_cert or True
        session.verify = verify
        # No proxy/netrc lookups from the environment on every call: Vault is addressed directly, and the
        # lookups cost more than the request itself on the lease path.
        session.trust_env = False
        self._addrs = settings.addrs
        self._addr_index = 0  # the address in use; moved on by _fail_over()
        self._addr_lock = threading.Lock()
        self._client = hvac.Client(
            url=self._addrs[0],
            token=settings.token if settings.auth == "token" else None,
            verify=verify,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # requests takes a float; the stub says int
            session=session,
        )
        self._auth = TokenKeeper(self._client, settings)

    @property
    def settings(self) -> VaultSettings:
        return self._settings

    @property
    def addr(self) -> str:
        """The Vault address in use (one of `settings.addrs`)."""
        return self._addrs[self._addr_index]

    def health(self) -> bool:
        """True if Vault answers, is initialised and unsealed. Never raises (no retries, no token)."""
        started = time.perf_counter()
        healthy = False
        for _ in self._addrs:  # with several addresses, an unreachable or sealed node moves on to the next
            index = self._addr_index
            try:
                status = self._client.sys.read_health_status(method="GET", standby_ok=True)
                # hvac returns the JSON body for a 200 and the raw response otherwise (sealed: 503).
                healthy = isinstance(status, dict) and status.get("initialized") is True \
                    and status.get("sealed") is False
            except Exception as exc:  # noqa: BLE001 - health must never raise; only the class name is kept
                log.info("vault_health_failed", error=type(exc).__name__)
                if not (isinstance(exc, _FAIL_OVER) and self._fail_over(index)):
                    break
                continue
            if healthy or not self._fail_over(index):
                break
        self._report("health", time.perf_counter() - started, "ok" if healthy else "unavailable")
        return healthy

    def close(self) -> None:
        """Close the HTTP connections. The client must not be used afterwards."""
        self._client.adapter.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one Vault operation: fresh token, retries, one re-login on an invalid token, translation
        of foreign exceptions, and one observe() report."""
        started = time.perf_counter()
        outcome = "error"
        try:
            with errors.translating(VAULT_ERRORS):
                result = self._with_retries(lambda: self._with_token(fn))
            outcome = "ok"
            return result
        except errors.KeyServiceError as exc:
            outcome = _snake(type(exc).__name__)
            raise
        finally:
            self._report(operation, time.perf_counter() - started, outcome)

    def _with_token(self, fn: Callable[[], T]) -> T:
        generation = self._auth.ensure_fresh()
        try:
            return fn()
        except hvac.exceptions.Forbidden:
            if not self._auth.recover(generation):
                raise
        # Outside the except block, so a second refusal is not chained to the first one's text.
        return fn()

    def _with_retries(self, fn: Callable[[], T]) -> T:
        attempt = 0
        hops = 0  # immediate moves to another address in this call (at most one per other address)
        while True:
            index = self._addr_index
            try:
                return fn()
            except _RETRYABLE as exc:
                error = type(exc).__name__
                moved = isinstance(exc, _FAIL_OVER) and self._fail_over(index)
                if moved and hops < len(self._addrs) - 1:
                    hops += 1
                    continue  # another node, at once: no backoff, no attempt used
                if attempt >= self._settings.max_retries:
                    raise
            attempt += 1
            ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            log.warning("vault_retry", error=error, attempt=attempt, delay_seconds=round(delay, 3))
            time.sleep(delay)  # backoff before the next attempt

    def _fail_over(self, failed: int) -> bool:
        """Move from address `failed` to the next one, unless another thread already moved on from it.
        False when there is only one address."""
        if len(self._addrs) < 2:
            return False
        with self._addr_lock:
            if self._addr_index == failed:
                self._addr_index = (failed + 1) % len(self._addrs)
                self._client.url = self._addrs[self._addr_index]
                log.warning("vault_failover", failed=self._addrs[failed], now=self._addrs[self._addr_index])
        return True

    def _report(self, operation: str, seconds: float, outcome: str) -> None:
        if self._observe is None:
            return
        try:
            self._observe(operation, seconds, outcome)
        except Exception as exc:  # noqa: BLE001 - metrics must never break a Vault call
            log.warning("vault_observe_failed", error=type(exc).__name__)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
