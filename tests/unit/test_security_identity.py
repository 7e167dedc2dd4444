"""Issue 11, finding 6: a SPIFFE identity comes from the certificate's URI SAN only, in canonical form.

A certificate with CN `spiffe://byok.local/admin` and no URI SAN was taken as admin. Now: without a URI SAN a
certificate names no one (the CN is used only behind BYOK_IDENTITY_CN_FALLBACK, and never a CN that looks like a
SPIFFE ID); a URI SAN with dot segments, empty segments, upper-case trust domain, port, query, percent-encoding
or a second URI names no one either. Shown on the helpers and on a running proxy, which refuses such a caller
before asking keyservice anything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.tls import IDENTITY_POLICY, TlsFiles, canonical_spiffe_id, channel_credentials, identity_from_pem
from devstack.ports import free_port
from proxyservice.server import create_server
from proxyservice.settings import ProxySettings
from tests.support.stack import Identities, proxy_settings

CANONICAL = ["spiffe://byok.local/admin", "spiffe://byok.local/caller/chat-api",
             "spiffe://cluster.local/ns/byok/sa/byok-admin", "spiffe://byok.local", "spiffe://a-b_c.d/x.y_z-1"]
NOT_CANONICAL = [
    "spiffe://byok.local/caller/../admin", "spiffe://byok.local/./admin", "spiffe://byok.local/caller/..",
    "spiffe://byok.local//admin", "spiffe://byok.local/admin/", "spiffe://BYOK.local/admin",
    "SPIFFE://byok.local/admin", "spiffe://byok.local:443/admin", "spiffe://user@byok.local/admin",
    "spiffe://byok.local/admin?role=x", "spiffe://byok.local/admin#x", "spiffe://byok.local/%61dmin",
    "spiffe:///admin", "spiffe://byok.local/ad min", "https://byok.local/admin", "spiffe://byok.local/" + "a" * 2100,
]


@pytest.mark.parametrize("value", CANONICAL)
def test_canonical_spiffe_ids_are_accepted(value: str) -> None:
    assert canonical_spiffe_id(value)


@pytest.mark.parametrize("value", NOT_CANONICAL)
def test_non_canonical_spiffe_ids_are_refused(value: str) -> None:
    assert not canonical_spiffe_id(value)


def _cert(ca: CertificateAuthority, cn: str, uris: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1)))
    if uris:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_identity_comes_from_the_uri_san_only() -> None:
    ca = CertificateAuthority.create()
    admin = spiffe_id("admin")
    assert identity_from_pem(_cert(ca, "whatever", [admin])) == admin
    # The attack: the SPIFFE ID in the CN, no URI SAN. Refused whatever the fallback setting.
    cn_spiffe = _cert(ca, admin, [])
    assert identity_from_pem(cn_spiffe) == ""
    assert identity_from_pem(cn_spiffe, cn_fallback=True) == ""
    # A plain CN names its holder only with the fallback on (off by default).
    plain = _cert(ca, "billing.caller", [])
    assert IDENTITY_POLICY.cn_fallback is False
    assert identity_from_pem(plain) == ""
    assert identity_from_pem(plain, cn_fallback=True) == "billing.caller"
    # Non-canonical or ambiguous URI SANs name no one, and the CN is not consulted then.
    assert identity_from_pem(_cert(ca, admin, ["spiffe://byok.local/caller/../admin"]), cn_fallback=True) == ""
    assert identity_from_pem(_cert(ca, admin, [spiffe_id("caller/x"), admin])) == ""
    assert identity_from_pem(_cert(ca, "x", ["https://byok.local/admin"])) == ""


def test_the_cn_fallback_is_a_proxy_setting_off_by_default(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    files = ca.write_identity(tmp_path, "proxy", spiffe=spiffe_id("proxyservice"))
    env = {"BYOK_TLS_CERT": files.cert, "BYOK_TLS_KEY": files.key, "BYOK_TLS_CA": files.ca}
    assert ProxySettings.from_env(env).identity_cn_fallback is False
    assert ProxySettings.from_env(env | {"BYOK_IDENTITY_CN_FALLBACK": "true"}).identity_cn_fallback is True


def _write(directory: Path, name: str, cert: bytes, key: bytes, ca: CertificateAuthority) -> TlsFiles:
    paths = {part: directory / f"{name}.{part}" for part in ("crt", "key", "ca")}
    for part, data in (("crt", cert), ("key", key), ("ca", ca.pem)):
        paths[part].write_bytes(data)
    return TlsFiles(cert=str(paths["crt"]), key=str(paths["key"]), ca=str(paths["ca"]))


async def test_a_running_proxy_refuses_a_cn_only_spiffe_certificate(ids: Identities, tmp_path: Path) -> None:
    cert, key = ids.ca.issue(spiffe_id("caller/chat-api"))  # CN = the caller's SPIFFE ID, no URI SAN
    cn_only = _write(tmp_path, "cn-only", cert, key, ids.ca)
    cert, key = ids.ca.issue("dots", spiffe="spiffe://byok.local/caller/../admin")
    dotted = _write(tmp_path, "dotted", cert, key, ids.ca)
    # keyservice is a closed port: a caller whose identity is accepted gets UNAVAILABLE from the lease lookup.
    app = await create_server(proxy_settings(ids, free_port(), health_addr="", metrics_addr=""))
    request = pb.ChatRequest(parameters=pb.ChatParameters(
        tenant=pb.Tenant(org_id="acme"), provider="openai", model="gpt-4o-mini",
        messages=[pb.Message(role=pb.ROLE_USER, content="hi")]))

    async def chat(files: TlsFiles) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(f"localhost:{app.port}", channel_credentials(files)) as channel:
            try:
                await pb_grpc.ChatServiceStub(channel).Chat(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    try:
        assert await chat(cn_only) == grpc.StatusCode.PERMISSION_DENIED
        assert await chat(dotted) == grpc.StatusCode.PERMISSION_DENIED
        assert await chat(ids.caller) == grpc.StatusCode.UNAVAILABLE  # accepted; keyservice is not there
    finally:
        await app.stop(0)
