"""Building the keyservice gRPC server apart from running it (the grpc examples' pattern):
`create_server(settings)` wires everything and binds (port 0 in tests); `serve()` adds signals and a
graceful stop. Health and reflection are registered on the mTLS port, health also on a plaintext port."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from byok.keys.v1 import key_service_pb2, key_service_pb2_grpc
from byokcommon.decoding import DecodeGuard
from byokcommon.grpcserver import ServingApp, mark_serving, open_side_ports, start_grpc
from byokcommon.health import NOT_SERVING, SERVING
from byokcommon.interceptor import RequestInterceptor
from byokcommon.metrics import RpcMetrics
from byokcommon.runner import serve_until_signalled
from byokcommon.tls import configure_identity
from keyservice.audit_writer import AuditWriter
from keyservice.authz import RoleAuthorizer
from keyservice.credentials import CredentialManager
from keyservice.derive import Derivations
from keyservice.leases import LeaseIssuer
from keyservice.reconciler import run_periodically
from keyservice.revocation_feed import RevocationFeed
from keyservice.service import KeyServicer
from keyservice.settings import KeyServiceSettings
from keyservice.store import Store
from keyservice.usage import UsageService
from keyservice.usage import retention as usage_retention
from keyservice.vault import VaultClient

SERVICE_NAME = key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name
_log = structlog.get_logger("byok.keyservice")


@dataclass(kw_only=True)
class KeyServiceApp(ServingApp):
    """A running keyservice: the servers and everything they own, stopped together by `stop()`."""

    store: Store
    vault: VaultClient
    feed: RevocationFeed
    interceptor: RequestInterceptor
    metrics: RpcMetrics
    _executor: ThreadPoolExecutor | None = None
    audit_writer: AuditWriter | None = None
    derivations: Derivations | None = None

    async def stop(self, grace: float = 5.0) -> None:
        await self.cancel_tasks()
        # Revocation watches end first, so that the grace period waits only for unary calls and the proxies
        # follow another replica's feed at once (this one stops delivering now).
        self.feed.close_subscribers()
        await self.server.stop(grace)
        await self.feed.stop()
        await self.close_side_ports()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.audit_writer:
            self.audit_writer.close()
        if self.derivations:
            self.derivations.close()
        self.vault.close()
        self.store.close()


async def create_server(settings: KeyServiceSettings, *, migrate: bool = True,
                        reconcile: bool = True) -> KeyServiceApp:
    """Wire and start keyservice; returns once it is listening (port 0 in settings picks a free port)."""
    configure_identity(cn_fallback=settings.identity_cn_fallback)
    executor = ThreadPoolExecutor(max_workers=settings.blocking_threads, thread_name_prefix="ks-blocking")
    metrics = RpcMetrics()
    store = Store(settings.database_url)
    if migrate:
        await asyncio.get_running_loop().run_in_executor(executor, store.migrate)
    vault = VaultClient(settings.vault, observe=_vault_observer(metrics))
    if settings.vault.transit_key:
        await asyncio.get_running_loop().run_in_executor(executor, vault.ensure_transit_key)
    feed = RevocationFeed(store)
    await feed.start()
    credentials = CredentialManager(store, vault, keep_secret_versions=settings.keep_secret_versions,
                                    create_deadline_seconds=settings.create_deadline_seconds,
                                    egress=settings.egress)
    audit_writer = AuditWriter(store, registry=metrics.registry)
    derivations = Derivations(settings.derive, settings.egress,
                              lease_ttl=dt.timedelta(seconds=settings.lease_ttl_seconds),
                              count=_derivation_counter(metrics))
    usage = UsageService.create(store, prices_file=settings.prices_file, registry=metrics.registry,
                                retention=settings.usage_retention)
    leases = LeaseIssuer(store, vault, ttl_seconds=settings.lease_ttl_seconds,
                         platform_keys=settings.platform_keys, provider_base_urls=settings.provider_base_urls,
                         audit_writer=audit_writer, derivations=derivations, mark_health=credentials.record_health,
                         admit=usage.budgets.check)
    servicer = KeyServicer(store=store, credentials=credentials, leases=leases, feed=feed, executor=executor,
                           verify_timeout=settings.verify_timeout_seconds,
                           provider_base_urls=settings.provider_base_urls, audit_writer=audit_writer,
                           on_lease=_lease_counter(metrics), egress=settings.egress, usage=usage)
    interceptor = RequestInterceptor(authorize=RoleAuthorizer(settings.roles), metrics=metrics,
                                     max_concurrent=settings.max_concurrent_rpcs)
    parts = await start_grpc(
        service_name=SERVICE_NAME,
        register=lambda server: key_service_pb2_grpc.add_KeyServiceServicer_to_server(servicer, server),
        interceptors=[interceptor, DecodeGuard()],
        options=[
            ("grpc.max_receive_message_length", 1 << 20),
        ],
        tls_files=settings.tls, listen_addr=settings.grpc_addr, on_tls_reload=lambda: _log.info("tls.reloaded"))
    app = KeyServiceApp(**parts.fields(), store=store, vault=vault, feed=feed, interceptor=interceptor,
                        metrics=metrics, _executor=executor, audit_writer=audit_writer, derivations=derivations)
    await open_side_ports(app, health_addr=settings.health_addr, metrics_addr=settings.metrics_addr,
                          registry=metrics.registry)
    await mark_serving(app, SERVICE_NAME)
    app._tasks.append(asyncio.create_task(_watch_dependencies(app.health, store, vault, executor)))
    app._tasks.append(asyncio.create_task(_forget_revoked(feed, derivations)))
    async def run_blocking(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args, **kwargs))
    app._tasks.append(asyncio.create_task(usage_retention.run_periodically(run_blocking, store,
                                                                          settings.usage_retention)))
    if reconcile:
        app._tasks.append(asyncio.create_task(run_periodically(
            run_blocking, store, vault, interval=settings.reconcile_interval_seconds,
            grace_seconds=settings.reconcile_grace_seconds,
            create_deadline_seconds=settings.create_deadline_seconds)))
    _log.info("keyservice.started", port=app.port, health_port=app.health_port, metrics_port=app.metrics_port,
              database=store.dialect, vault_mode="envelope" if settings.vault.transit_key else "kv")
    return app


async def _watch_dependencies(health: Any, store: Store, vault: VaultClient, executor: ThreadPoolExecutor) -> None:
    """Readiness follows Vault and the DB: NOT_SERVING while either is down, SERVING once both are back."""
    loop = asyncio.get_running_loop()
    current = SERVING
    while True:
        ok = await loop.run_in_executor(executor, lambda: store.ping() and vault.health())
        wanted = SERVING if ok else NOT_SERVING
        if wanted != current:
            current = wanted
            await health.set(SERVICE_NAME, wanted)
            _log.warning("keyservice.dependencies", serving=ok)
        await asyncio.sleep(5)


# Revocations after which a credential's derived credentials have no use (a scope change, e.g. an activation or a
# new api_base, leaves its secret as it was).
_SECRET_GONE = frozenset({"rotated", "deactivated", "deleted", "invalid"})


async def _forget_revoked(feed: RevocationFeed, derivations: Derivations) -> None:
    """Drop a credential's derived credentials when it is rotated, deactivated, deleted or marked invalid, by this
    replica or another: they must not outlive their need in this process's memory."""
    queue = feed.subscribe()
    try:
        while (row := await queue.get()) is not None:  # None: the feed closed (keyservice is stopping)
            if row.credential_id and row.reason in _SECRET_GONE:
                derivations.forget(row.credential_id)
    finally:
        feed.unsubscribe(queue)


def _derivation_counter(metrics: RpcMetrics) -> Any:
    from prometheus_client import Counter

    counted = Counter("byok_derived_credentials_total", "Leases' derived cloud credentials, by derivation and "
                      "outcome: hit (from the cache), miss (derived), error.", ["derivation", "outcome"],
                      registry=metrics.registry)

    def count(derivation: str, outcome: str) -> None:
        counted.labels(derivation, outcome).inc()
    return count


def _lease_counter(metrics: RpcMetrics) -> Any:
    from prometheus_client import Counter

    leases = Counter("byok_leases_issued_total", "Key leases issued, by provider and key source.",
                     ["provider", "key_source"], registry=metrics.registry)

    def count(provider: str, key_source: str) -> None:
        leases.labels(provider, key_source).inc()
    return count


def _vault_observer(metrics: RpcMetrics) -> Any:
    from prometheus_client import Histogram

    hist = Histogram("byok_vault_request_duration_seconds", "Vault calls, by operation and outcome.",
                     ["operation", "outcome"], registry=metrics.registry)

    def observe(operation: str, seconds: float, outcome: str) -> None:
        hist.labels(operation, outcome).observe(seconds)
    return observe


async def serve(settings: KeyServiceSettings) -> int:
    """Run until SIGINT/SIGTERM, then drain and stop gracefully (BYOK_SHUTDOWN_* settings)."""
    app = await create_server(settings)
    return await serve_until_signalled("keyservice", app, settings.grpc_addr, drain=settings.shutdown_drain_seconds,
                                       grace=settings.shutdown_grace_seconds)
