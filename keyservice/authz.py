"""Which role may call which keyservice RPC. Identities map to roles by configuration (BYOK_ROLES)."""

from __future__ import annotations

from keyservice.errors import PermissionDenied

PROXY_METHODS = frozenset({"IssueKeyLease", "ListTenantModels", "WatchRevocations", "ReportKeyFailure",
                           "ReportUsage"})


class RoleAuthorizer:
    """authorize(method, identity): data-plane RPCs need `proxy`, everything else `admin`."""

    def __init__(self, roles: dict[str, str]) -> None:
        self._roles = dict(roles)

    def role_of(self, identity: str) -> str:
        return self._roles.get(identity, "")

    def __call__(self, method: str, identity: str) -> None:
        role = self._roles.get(identity)
        needed = "proxy" if method in PROXY_METHODS else "admin"
        if role != needed:
            who = identity or "a caller without a client certificate identity"
            raise PermissionDenied(f"{method} needs role {needed}; {who} has {role or 'no role'}")
