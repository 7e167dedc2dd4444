"""The Vault token's life cycle for keyservice's Vault adapter: login, renewal ahead of expiry, re-login.

Three ways in (`VaultSettings.auth`): a static `token` (renewed with renew-self while renewable), `approle`
(role_id + secret_id) and `kubernetes` (the pod's service-account JWT, read from its file at every login
because the kubelet rotates it). One `TokenKeeper` is shared by every thread using the adapter's hvac client;
its lock makes sure only one of them renews or logs in at a time, and a *generation* number tells a thread
whose call was refused whether the token it used has already been replaced by another thread.

Only the call wrapper (`keyservice.vault._call`) uses this module; hvac exceptions raised here are translated
there.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import structlog

from keyservice import errors
from keyservice.vault.settings import VaultSettings

log = structlog.get_logger(__name__)

# Renew when this share of the token's TTL has passed: leaves a third of the TTL to absorb a slow or
# retried renewal before the token actually expires.
RENEW_AT_FRACTION = 2 / 3
# Vault answers that are worth trying again (5xx, sealed); the adapter's retry loop handles them.
_TRANSIENT = (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway, hvac.exceptions.VaultDown)


class TokenKeeper:
    """Keeps the hvac client's token valid. Thread-safe; every Vault call goes through `ensure_fresh()`."""

    def __init__(self, client: hvac.Client, settings: VaultSettings,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = False          # a login (or the static token's lookup) has happened
        self._generation = 0         # bumped each time the token is replaced
        self._renew_at = 0.0         # monotonic time at which to renew (or re-login)
        self._expires_at = math.inf  # monotonic time at which the token dies (inf: never, e.g. root)
        self._renewable = False
        self._base_ttl = 0.0         # TTL the token was issued with; a shorter renewal means max TTL is near
        self._capped = False         # the last renewal was cut short by the token's max TTL

    @property
    def can_login(self) -> bool:
        """Whether a fresh token can be had (AppRole, Kubernetes); a static token cannot be replaced."""
        return self._settings.auth != "token"

    @property
    def generation(self) -> int:
        return self._generation

    def ensure_fresh(self) -> int:
        """Log in, renew or re-login if due, and return the generation of the token now in use.

        The fast path takes no lock: reading two floats races harmlessly with a writer (at worst one
        extra trip through the locked path, which re-checks).
        """
        if self._ready and self._clock() < self._renew_at:
            return self._generation
        with self._lock:
            now = self._clock()
            if self._ready and now < self._renew_at:
                return self._generation
            if not self._ready and self.can_login:
                self._login()
            elif not self._ready:
                self._adopt_static_token()
            elif self.can_login and (self._capped or not self._renewable or now >= self._expires_at):
                # Past (or about to reach) max TTL: renewing would only shrink the TTL further.
                self._login()
            elif self._renewable:
                self._renew()
            else:
                # A static token that cannot be renewed: nothing to do until it dies; stop checking.
                self._renew_at = math.inf
            return self._generation

    def recover(self, generation: int) -> bool:
        """After Vault refused a call made with token `generation`: True if the call should be retried
        once with a new token, False if the refusal stands (a policy denial, or a token we cannot replace).
        """
        with self._lock:
            if generation != self._generation:
                return True  # another thread already replaced the token
            if not self.can_login:
                return False
            try:
                # A working token that was refused means the policy says no; don't log in again for it.
                self._client.auth.token.lookup_self()
                return False
            except hvac.exceptions.Forbidden:
                pass
            log.info("vault_token_rejected_relogin", auth=self._settings.auth)
            self._login()
            return True

    # -- the steps; each is called with the lock held -------------------------------------------------

    def _adopt_static_token(self) -> None:
        started = self._clock()
        data = self._client.auth.token.lookup_self()["data"]
        ttl = float(data.get("ttl") or 0)
        self._renewable = bool(data.get("renewable"))
        self._base_ttl = float(data.get("creation_ttl") or ttl)
        self._set_deadlines(started, ttl)
        self._capped = False
        self._ready = True

    def _login(self) -> None:
        started = self._clock()
        s = self._settings
        try:
            if s.auth == "approle":
                response = self._client.auth.approle.login(
                    role_id=s.role_id, secret_id=s.secret_id, mount_point=s.approle_mount)
            elif s.auth == "kubernetes":
                response = self._client.auth.kubernetes.login(
                    role=s.k8s_role, jwt=self._read_k8s_jwt(), mount_point=s.k8s_mount)
            else:  # pragma: no cover - guarded by can_login
                raise errors.KeyServiceError("cannot log in with a static token")
        except _TRANSIENT:
            raise  # the caller's retry loop tries again
        except hvac.exceptions.VaultError as exc:
            # Refused credentials are not the caller's fault, nor a policy decision on its request: to the
            # caller Vault is unusable. Say so without Vault's text.
            log.error("vault_login_failed", auth=s.auth, error=type(exc).__name__)
            raise errors.VaultUnavailable("vault login failed (check the auth settings)") from None
        # hvac has already put the new token on the client (use_token=True).
        self._adopt_auth(started, response["auth"])
        self._base_ttl = float(response["auth"].get("lease_duration") or 0)
        self._capped = False
        self._generation += 1
        self._ready = True
        log.info("vault_login", auth=s.auth, generation=self._generation)

    def _renew(self) -> None:
        started = self._clock()
        try:
            response = self._client.auth.token.renew_self()
        except hvac.exceptions.VaultError as exc:
            # Vault refuses (OpenBao even with a 500) once the token is past its max TTL or revoked. A
            # failed renewal never fails the caller's call by itself: log in afresh if we can, else let the
            # call go ahead with the token while it lasts and try renewing again later.
            log.warning("vault_token_renew_failed", error=type(exc).__name__)
            if self.can_login:
                self._login()
            elif started < self._expires_at:
                self._renew_at = started + max(1.0, (self._expires_at - started) / 2)
            else:
                self._renew_at = math.inf  # dead; the call will report Vault's refusal
            return
        auth = response["auth"]
        self._adopt_auth(started, auth)
        ttl = float(auth.get("lease_duration") or 0)
        # Vault renews by the token's own TTL unless the max TTL is nearer: a shorter one means the end.
        self._capped = 0 < ttl < self._base_ttl
        log.info("vault_token_renewed", ttl_seconds=ttl, capped=self._capped)

    def _adopt_auth(self, started: float, auth: dict[str, Any]) -> None:
        self._renewable = bool(auth.get("renewable"))
        self._set_deadlines(started, float(auth.get("lease_duration") or 0))

    def _set_deadlines(self, started: float, ttl: float) -> None:
        # Deadlines count from before the request went out, so network time only makes them earlier.
        if ttl <= 0:  # root and other non-expiring tokens
            self._expires_at = self._renew_at = math.inf
        else:
            self._expires_at = started + ttl
            self._renew_at = started + ttl * RENEW_AT_FRACTION

    def _read_k8s_jwt(self) -> str:
        try:
            return Path(self._settings.k8s_jwt_path).read_text().strip()
        except OSError:
            # The OS error names the path only, but keep to fixed messages like the rest of the adapter.
            raise errors.VaultUnavailable("kubernetes service account token is unreadable") from None
