"""Certificate rotation without restarts, on a real keyservice over real TLS (dev CAs from byokcommon.devcerts):
the server presents a renewed certificate to new connections while open streams continue, reloads its trusted
CA bundle, refuses expired and not-yet-valid client certificates, and the proxy's keyservice client rebuilds
its channel when its own certificate files change (docs/operations.md, "Certificates")."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.tls import TlsFiles, channel_credentials
from keyservice.server import KeyServiceApp, create_server
from proxyservice import errors as proxy_errors
from proxyservice.keyclient import KeyServiceClient, LeaseKey
from tests.integration.test_byokctl import ServiceLoop, fake_openai_key
from tests.support.bao import BaoDevServer
from tests.support.stack import ADMIN, CALLER, PROXY, Identities, keyservice_settings


def served_certificate(port: int, client: TlsFiles, server_name: str = "localhost") -> x509.Certificate:
    """The leaf certificate the server presents on a brand-new TLS connection (raw handshake, no gRPC)."""
    context = ssl.create_default_context(cafile=client.ca)
    context.load_cert_chain(client.cert, client.key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def replace_file(path: str | Path, data: bytes) -> None:
    """Write next to the target, then rename over it: readers see the old or the new file, never half."""
    tmp = Path(f"{path}.tmp-{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_identity(files: TlsFiles, ca: CertificateAuthority, name: str, spiffe: str, **validity: dt.datetime
                   ) -> x509.Certificate:
    """Issue a new certificate for `files` (key first, then certificate, each replaced atomically)."""
    cert, key = ca.issue(name, spiffe=spiffe, **validity)
    replace_file(files.key, key)
    replace_file(files.cert, cert)
    return x509.load_pem_x509_certificate(cert)


def fresh_channel(port: int, files: TlsFiles) -> grpc.Channel:
    # A channel of its own (no subchannel shared with other channels): every check is a new TLS handshake.
    return grpc.secure_channel(f"localhost:{port}", channel_credentials(files),
                               options=[("grpc.use_local_subchannel_pool", 1)])


def call_providers(port: int, files: TlsFiles) -> grpc.StatusCode:
    with fresh_channel(port, files) as channel:
        try:
            kpb_grpc.KeyServiceStub(channel).ListProviders(kpb.ListProvidersRequest(), timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]


@dataclass
class Tls:
    ids: Identities
    services: ServiceLoop
    keyservice: KeyServiceApp
    server_files: TlsFiles  # keyservice's own files, rewritten by the tests
    tmp: Path


@pytest.fixture(scope="module")
def tls(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    tmp = tmp_path_factory.mktemp("certreload")
    ids = Identities.create(tmp / "certs")
    # The server's files live apart (their ca.crt is rewritten by the CA-reload test).
    server_files = ids.ca.write_identity(tmp / "server", "keyservice", spiffe=spiffe_id("keyservice"))
    services = ServiceLoop()
    app = services.run(create_server(keyservice_settings(bao, ids, f"sqlite:///{tmp}/ks.db", tls=server_files)))
    try:
        yield Tls(ids=ids, services=services, keyservice=app, server_files=server_files, tmp=tmp)
    finally:
        services.run(app.stop(grace=0))
        services.close()


def test_renewed_server_certificate_serves_new_connections_while_open_streams_continue(tls: Tls) -> None:
    port, admin = tls.keyservice.port, tls.ids.admin
    before = served_certificate(port, admin)
    with fresh_channel(port, tls.ids.admin) as admin_channel, fresh_channel(port, tls.ids.proxyservice) as watch:
        stub = kpb_grpc.KeyServiceStub(admin_channel)
        credential = stub.CreateCredential(kpb.CreateCredentialRequest(
            provider="openai", scope=kpb.Scope(org_id="renew"), name="main", api_key=fake_openai_key()),
            timeout=10).credential
        stream = kpb_grpc.KeyServiceStub(watch).WatchRevocations(kpb.WatchRevocationsRequest(), timeout=30)
        assert next(stream).ready  # the stream is open, on a connection made with the old certificate

        reloads = tls.keyservice.tls.reloads
        renewed = write_identity(tls.server_files, tls.ids.ca, "keyservice", spiffe_id("keyservice"))
        assert renewed.serial_number != before.serial_number
        assert served_certificate(port, admin).serial_number == renewed.serial_number
        assert tls.keyservice.tls.reloads == reloads + 1

        # The stream opened before the renewal still delivers events.
        stub.DeactivateCredential(kpb.DeactivateCredentialRequest(credential_id=credential.credential_id),
                                  timeout=10)
        event = next(stream)
        assert (event.credential_id, event.reason) == (credential.credential_id,
                                                       kpb.REVOCATION_REASON_DEACTIVATED)
        stream.cancel()


def test_trusted_ca_bundle_is_reloaded(tls: Tls) -> None:
    port = tls.keyservice.port
    other_ca = CertificateAuthority.create("byok second CA")
    # An admin certificate from a CA the server does not trust yet; it trusts the server's CA.
    newcomer = other_ca.write_identity(tls.tmp / "newcomer", "admin", spiffe=ADMIN)
    newcomer = TlsFiles(newcomer.cert, newcomer.key, tls.ids.admin.ca)
    assert call_providers(port, newcomer) == grpc.StatusCode.UNAVAILABLE  # handshake refused

    original = Path(tls.server_files.ca).read_bytes()
    try:
        replace_file(tls.server_files.ca, original + other_ca.pem)  # trust both during the CA rotation
        assert call_providers(port, newcomer) == grpc.StatusCode.OK
        assert call_providers(port, tls.ids.admin) == grpc.StatusCode.OK
        replace_file(tls.server_files.ca, other_ca.pem)  # rotation over: the old CA is no longer trusted
        assert call_providers(port, newcomer) == grpc.StatusCode.OK
        assert call_providers(port, tls.ids.admin) == grpc.StatusCode.UNAVAILABLE
    finally:
        replace_file(tls.server_files.ca, original)
    assert call_providers(port, tls.ids.admin) == grpc.StatusCode.OK


@pytest.mark.parametrize("validity", ["expired", "not yet valid"])
def test_expired_or_not_yet_valid_client_certificate_is_refused(tls: Tls, validity: str) -> None:
    now = dt.datetime.now(dt.UTC)
    window = ({"not_before": now - dt.timedelta(days=2), "not_after": now - dt.timedelta(minutes=1)}
              if validity == "expired" else
              {"not_before": now + dt.timedelta(hours=1), "not_after": now + dt.timedelta(days=1)})
    files = tls.ids.ca.write_identity(tls.tmp / validity.replace(" ", "-"), "admin", spiffe=ADMIN, **window)
    assert call_providers(tls.keyservice.port, files) == grpc.StatusCode.UNAVAILABLE


def test_proxy_client_rebuilds_its_channel_when_its_certificate_files_change(tls: Tls) -> None:
    """An open connection keeps the identity it was made with, so only a rebuilt channel can show the
    new certificate: swapping in a certificate with another (unauthorised) identity must be noticed at once."""
    ids = tls.ids
    with fresh_channel(tls.keyservice.port, ids.admin) as channel:
        stub = kpb_grpc.KeyServiceStub(channel)
        stub.CreateCredential(kpb.CreateCredentialRequest(
            provider="openai", scope=kpb.Scope(org_id="rebuild"), name="main", api_key=fake_openai_key()), timeout=10)
        stub.CreateCallerBinding(kpb.CreateCallerBindingRequest(binding=kpb.CallerBinding(
            caller_identity=CALLER, org_id="rebuild")), timeout=10)
    files = ids.ca.write_identity(tls.tmp / "proxy-client", "proxyservice", spiffe=PROXY)
    files = TlsFiles(files.cert, files.key, ids.proxyservice.ca)
    client = KeyServiceClient(f"localhost:{tls.keyservice.port}", files, timeout=5)
    key = LeaseKey(caller=CALLER, org_id="rebuild", project_id="", user_id="", provider="openai", model="",
                   credential_id="")

    async def lease() -> str:
        try:
            return (await client.issue_lease(key)).credential_id
        except proxy_errors.ProxyError as exc:
            return type(exc).__name__

    async def rotate_under_an_open_stream() -> tuple[int, int]:
        """A revocation stream opened before a rotation keeps its channel until it ends; then it is closed."""
        stream = client.watch_revocations()
        assert (await anext(stream)).ready
        write_identity(files, ids.ca, "proxyservice", PROXY)
        assert (await lease()).startswith("cred_")  # on a new channel
        kept = len(client._old_channels)
        await stream.aclose()
        return kept, len(client._old_channels)

    try:
        assert tls.services.run(lease()).startswith("cred_")
        write_identity(files, ids.ca, "impostor", spiffe_id("not-the-proxy"))
        assert tls.services.run(lease()) == "PermissionDenied"  # the new certificate is in use
        write_identity(files, ids.ca, "proxyservice", PROXY)
        assert tls.services.run(lease()).startswith("cred_")  # renewed proxy certificate: served again
        assert client._old_channels == []  # replaced channels without streams were closed
        assert tls.services.run(rotate_under_an_open_stream()) == (1, 0)
    finally:
        tls.services.run(client.close())


def test_certificate_that_expires_on_an_open_connection_is_refused_there(tls: Tls) -> None:
    """With no CRL, short-lived certificates are the revocation: the handshake checks validity only when a
    connection opens, so every RPC re-checks it, and an expired certificate stops working on a kept channel."""
    now = dt.datetime.now(dt.UTC)
    files = tls.ids.ca.write_identity(tls.tmp / "short-lived", "admin", spiffe=ADMIN,
                                      not_before=now - dt.timedelta(minutes=1),
                                      not_after=now + dt.timedelta(seconds=2))
    with fresh_channel(tls.keyservice.port, files) as channel:
        stub = kpb_grpc.KeyServiceStub(channel)
        stub.ListProviders(kpb.ListProvidersRequest(), timeout=5)  # valid: served, connection now open
        time.sleep(max(0.0, (now - dt.datetime.now(dt.UTC)).total_seconds() + 3.2))  # 1 s resolution
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListProviders(kpb.ListProvidersRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert call_providers(tls.keyservice.port, files) == grpc.StatusCode.UNAVAILABLE  # new connections too
