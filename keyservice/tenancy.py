"""Who may act for which tenant: caller bindings, per-org policies, and the emergency revoke of an org.

The core of those RPCs, as credentials.py is for keys: each change is written with its audit event and its
revocation event in one transaction (the store's), so a proxy hears of every change that can alter what it may
serve. The servicer checks and translates the request and calls these. Synchronous (the store is); the gRPC
layer runs them in its thread pool.
"""

from __future__ import annotations

from keyservice import audit
from keyservice.store import BindingRow, CredentialRow, Store


class Tenancy:
    def __init__(self, store: Store) -> None:
        self.store = store

    def bind(self, actor: str, caller: str, org_id: str, project_id: str) -> BindingRow:
        """Let `caller` act for the org (project ''), or one project of it. The org-wide scope_changed makes
        proxies forget refusals they cached for the org, so the binding takes effect at once."""
        return self.store.create_binding(
            caller, org_id, project_id, revocation="scope_changed",
            audit=audit.event(actor, "binding.create", org_id=org_id, project_id=project_id, caller=caller))

    def unbind(self, actor: str, caller: str, org_id: str, project_id: str) -> None:
        """Remove a binding; proxies drop the caller's leases for the tenant (caller_unbound)."""
        self.store.delete_binding(
            caller, org_id, project_id, revocation="caller_unbound",
            audit=audit.event(actor, "binding.delete", org_id=org_id, project_id=project_id, caller=caller))

    def bindings(self, *, caller: str = "", org_id: str = "") -> list[BindingRow]:
        return self.store.list_bindings(caller_identity=caller, org_id=org_id)

    def set_platform_fallback(self, actor: str, org_id: str, allow: bool) -> None:
        """Whether the org may be served with the platform's own keys; a change can alter every resolution of
        the org, hence the org-wide scope_changed."""
        self.store.set_org_policy(
            org_id, allow, revocation="scope_changed",
            audit=audit.event(actor, "org.policy.set", org_id=org_id, allow_platform_fallback=allow))

    def platform_fallback(self, org_id: str) -> bool:
        return self.store.get_org_policy(org_id)

    def revoke_org(self, actor: str, org_id: str) -> list[CredentialRow]:
        """Emergency: deactivate every credential of the org and its platform fallback (the store writes one
        revocation per credential and an org-wide one, with the audit event, in one transaction)."""
        return self.store.deactivate_org(org_id, audit=audit.event(actor, "org.revoke", org_id=org_id))
