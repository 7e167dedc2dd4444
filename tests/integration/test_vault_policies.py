"""The policies in deploy/vault/policies/, proven with real tokens on a real OpenBao: what each allows and refuses.

Tokens come from `bao token create -policy=... -no-default-policy` (so nothing leaks in through the default
policy); the allowed/refused checks go through the HTTP API with httpx. The server is bootstrapped once per
session by test_vault_bootstrap.bootstrap_once (unique mounts and a unique prefix on the shared `secret/`).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.test_vault_bootstrap import Bootstrapped, bootstrap_once, fake_key
from tests.support.bao import BaoDevServer

FORBIDDEN = 403


@dataclass(frozen=True)
class As:
    """Calls to the server with one token."""

    bao: BaoDevServer
    token: str

    def __call__(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return self.bao.api(method, path, token=self.token, **kwargs)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def boot(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Bootstrapped:
    return bootstrap_once(bao, tmp_path_factory.getbasetemp())


def token_for(bao: BaoDevServer, policy: str) -> As:
    created = bao.cli("token", "create", f"-policy={policy}", "-no-default-policy", "-ttl=15m", "-format=json")
    auth = json.loads(created.stdout)["auth"]
    assert auth["policies"] == [policy]
    return As(bao, auth["client_token"])


@pytest.fixture(scope="module")
def keyservice(bao: BaoDevServer, boot: Bootstrapped) -> As:
    return token_for(bao, boot.policy("keyservice"))


@pytest.fixture(scope="module")
def operator(bao: BaoDevServer, boot: Bootstrapped) -> As:
    return token_for(bao, boot.policy("operator"))


@pytest.fixture(scope="module")
def breakglass(bao: BaoDevServer, boot: Bootstrapped) -> As:
    return token_for(bao, boot.policy("breakglass"))


@pytest.fixture(scope="module")
def pki_issuer(bao: BaoDevServer, boot: Bootstrapped) -> As:
    return token_for(bao, boot.policy("pki-issuer"))


@pytest.fixture(scope="module")
def ops_import(bao: BaoDevServer, boot: Bootstrapped) -> As:
    return token_for(bao, boot.policy("ops-import"))


@pytest.fixture
def credential(bao: BaoDevServer, boot: Bootstrapped) -> tuple[str, str]:
    """(org, KV path under the byok prefix) of a secret written by root, with its fake key."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    path = f"{boot.prefix}/{org}/cred-{uuid.uuid4().hex[:8]}"
    assert bao.api("POST", f"{boot.kv}/data/{path}", json={"data": {"api_key": fake_key()}}).status_code == 200
    return org, path


# --- keyservice ---------------------------------------------------------------------------------------------

def test_keyservice_manages_secrets_under_its_prefix(keyservice: As, boot: Bootstrapped) -> None:
    kv, path = boot.kv, f"{boot.prefix}/org-1/cred-{uuid.uuid4().hex[:8]}"
    first, second = fake_key(), fake_key()
    assert keyservice("POST", f"{kv}/data/{path}", json={"data": {"api_key": first}}).status_code == 200
    read = keyservice("GET", f"{kv}/data/{path}")
    assert read.status_code == 200 and read.json()["data"]["data"]["api_key"] == first
    rotated = keyservice("POST", f"{kv}/data/{path}", json={"data": {"api_key": second}})
    assert rotated.status_code == 200 and rotated.json()["data"]["version"] == 2
    meta = keyservice("POST", f"{kv}/metadata/{path}", json={"custom_metadata": {"credential_id": "c1"}})
    assert meta.status_code == 204
    assert keyservice("GET", f"{kv}/metadata/{path}").json()["data"]["custom_metadata"] == {"credential_id": "c1"}
    listed = keyservice("LIST", f"{kv}/metadata/{boot.prefix}/org-1")
    assert listed.status_code == 200 and path.rsplit("/", 1)[1] in listed.json()["data"]["keys"]
    assert keyservice("LIST", f"{kv}/metadata/{boot.prefix}").status_code == 200  # reconciler sweep
    assert keyservice("POST", f"{kv}/destroy/{path}", json={"versions": [1]}).status_code == 204
    assert keyservice("DELETE", f"{kv}/data/{path}").status_code == 204
    assert keyservice("DELETE", f"{kv}/metadata/{path}").status_code == 204
    assert keyservice("GET", f"{kv}/metadata/{path}").status_code == 404


def test_keyservice_tags_a_new_path_before_its_data(keyservice: As, boot: Bootstrapped) -> None:
    """CreateCredential writes the managed_by tag first (a create on the metadata path), then the data."""
    kv, path = boot.kv, f"{boot.prefix}/org-1/cred-{uuid.uuid4().hex[:8]}"
    tagged = keyservice("POST", f"{kv}/metadata/{path}", json={"custom_metadata": {"managed_by": "byok"}})
    assert tagged.status_code == 204
    assert keyservice("POST", f"{kv}/data/{path}", json={"options": {"cas": 0},
                                                          "data": {"api_key": fake_key()}}).status_code == 200


def test_keyservice_uses_its_transit_key(keyservice: As, boot: Bootstrapped) -> None:
    transit, context = boot.transit, b64("org-1")
    plaintext = b64(fake_key())
    enc = keyservice("POST", f"{transit}/encrypt/byok", json={"plaintext": plaintext, "context": context})
    assert enc.status_code == 200
    ciphertext = enc.json()["data"]["ciphertext"]
    dec = keyservice("POST", f"{transit}/decrypt/byok", json={"ciphertext": ciphertext, "context": context})
    assert dec.status_code == 200 and dec.json()["data"]["plaintext"] == plaintext
    rewrap = keyservice("POST", f"{transit}/rewrap/byok", json={"ciphertext": ciphertext, "context": context})
    assert rewrap.status_code == 200
    info = keyservice("GET", f"{transit}/keys/byok")
    assert info.status_code == 200 and info.json()["data"]["derived"] is True


def test_keyservice_manages_its_own_token(keyservice: As) -> None:
    assert keyservice("GET", "auth/token/lookup-self").status_code == 200
    assert keyservice("POST", "auth/token/renew-self", json={}).status_code == 200


def test_keyservice_is_refused_everything_else(bao: BaoDevServer, keyservice: As, boot: Bootstrapped) -> None:
    kv, transit = boot.kv, boot.transit
    other_key = f"other-{uuid.uuid4().hex[:6]}"
    bao.api("POST", f"{transit}/keys/{other_key}", json={"derived": True})
    foreign = bao.api("POST", f"{transit}/encrypt/{other_key}",
                      json={"plaintext": b64("x"), "context": b64("org-1")}).json()["data"]["ciphertext"]
    refused = [
        keyservice("POST", f"{kv}/data/byok-other-prefix/org-1/c", json={"data": {"api_key": fake_key()}}),
        keyservice("POST", f"{kv}/data/{boot.prefix}-other-prefix/org-1/c", json={"data": {"api_key": "x"}}),
        keyservice("GET", f"{kv}/data/{boot.prefix}-other-prefix/org-1/c"),
        keyservice("LIST", f"{kv}/metadata"),
        keyservice("GET", "sys/policies/acl"),
        keyservice("GET", "sys/mounts"),
        keyservice("POST", f"{transit}/decrypt/{other_key}", json={"ciphertext": foreign, "context": b64("org-1")}),
        keyservice("POST", f"{transit}/keys/byok/rotate", json={}),
        keyservice("POST", f"{transit}/keys/byok/config", json={"min_decryption_version": 1}),
        keyservice("POST", f"{boot.pki_int}/issue/keyservice", json={"common_name": "keyservice"}),
        keyservice("POST", "auth/token/create", json={}),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)


# --- operator -----------------------------------------------------------------------------------------------

def test_operator_manages_metadata_but_never_reads_plaintext(operator: As, boot: Bootstrapped,
                                                            credential: tuple[str, str]) -> None:
    org, path = credential
    kv = boot.kv
    assert operator("GET", f"{kv}/metadata/{path}").status_code == 200
    assert operator("LIST", f"{kv}/metadata/{boot.prefix}/{org}").status_code == 200
    assert operator("POST", f"{kv}/metadata/{path}", json={"custom_metadata": {"owner": "ops"}}).status_code == 204
    assert operator("POST", f"{kv}/delete/{path}", json={"versions": [1]}).status_code == 204
    assert operator("POST", f"{kv}/undelete/{path}", json={"versions": [1]}).status_code == 204
    refused = [
        operator("GET", f"{kv}/data/{path}"),
        operator("POST", f"{kv}/data/{path}", json={"data": {"api_key": fake_key()}}),
        operator("DELETE", f"{kv}/metadata/{path}"),
        operator("GET", "sys/policies/acl"),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)
    assert operator("POST", f"{kv}/destroy/{path}", json={"versions": [1]}).status_code == 204


def test_operator_rotates_the_transit_key_but_cannot_decrypt(bao: BaoDevServer, operator: As,
                                                             boot: Bootstrapped) -> None:
    transit, context = boot.transit, b64("org-1")
    ciphertext = bao.api("POST", f"{transit}/encrypt/byok", json={"plaintext": b64(fake_key()),
                                                                   "context": context}).json()["data"]["ciphertext"]
    before = operator("GET", f"{transit}/keys/byok").json()["data"]["latest_version"]
    assert operator("POST", f"{transit}/keys/byok/rotate", json={}).status_code in (200, 204)
    assert operator("GET", f"{transit}/keys/byok").json()["data"]["latest_version"] == before + 1
    assert operator("POST", f"{transit}/keys/byok/config", json={"min_decryption_version": 1}).status_code in (200,
                                                                                                              204)
    refused = [
        operator("POST", f"{transit}/decrypt/byok", json={"ciphertext": ciphertext, "context": context}),
        operator("POST", f"{transit}/encrypt/byok", json={"plaintext": b64("x"), "context": context}),
        operator("POST", f"{transit}/keys/byok/trim", json={"min_available_version": 1}),
        operator("DELETE", f"{transit}/keys/byok"),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)


def test_operator_reads_audit_and_hashes_values(operator: As) -> None:
    assert operator("GET", "sys/audit").status_code == 200
    # The shared dev server has no audit device (OpenBao refuses API-enabled ones), so the hash itself fails
    # with "unknown device" rather than 403: the ACL let it through. The hash is proven in
    # test_vault_bootstrap's audit-snippet test, on a server with a declared device.
    assert operator("POST", "sys/audit-hash/nope", json={"input": "org-1"}).status_code != FORBIDDEN
    assert operator("POST", "sys/audit/nope", json={"type": "file"}).status_code == FORBIDDEN


def test_operator_issues_callers_revokes_and_tidies_but_mints_no_service_identity(operator: As,
                                                                                   boot: Bootstrapped) -> None:
    pki = boot.pki_int
    issued = operator("POST", f"{pki}/issue/caller", json={"common_name": "billing.caller", "ttl": "1h"})
    assert issued.status_code == 200
    serial = issued.json()["data"]["serial_number"]
    assert operator("GET", f"{pki}/cert/{serial}").status_code == 200
    assert operator("POST", f"{pki}/revoke", json={"serial_number": serial}).status_code == 200
    assert operator("POST", f"{pki}/tidy", json={"tidy_cert_store": True}).status_code == 202
    # A proxyservice certificate leases plaintext keys, an admin one manages every tenant's keys: minting
    # either would undo "no plaintext for operators".
    refused = [
        operator("POST", f"{pki}/issue/{role}", json={"common_name": role, "ttl": "1h"})
        for role in ("keyservice", "proxyservice", "admin")
    ] + [
        operator("POST", f"{pki}/sign/proxyservice", json={"csr": "x"}),
        operator("POST", f"{pki}/roles/keyservice", json={"allow_any_name": True}),
        operator("POST", f"{pki}/root/sign-intermediate", json={}),
        operator("POST", f"{boot.env['PKI_MOUNT']}/issue/keyservice", json={"common_name": "keyservice"}),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)


def test_pki_issuer_issues_every_role_and_nothing_else(pki_issuer: As, boot: Bootstrapped) -> None:
    pki = boot.pki_int
    for role in ("keyservice", "proxyservice", "admin", "caller"):
        issued = pki_issuer("POST", f"{pki}/issue/{role}", json={"common_name": role, "ttl": "1h"})
        assert issued.status_code == 200, (role, issued.text)
    refused = [
        pki_issuer("POST", f"{pki}/revoke", json={"serial_number": "00"}),
        pki_issuer("POST", f"{pki}/roles/caller", json={"allowed_uri_sans": "*"}),
        pki_issuer("GET", f"{boot.kv}/data/{boot.prefix}/anything"),
        pki_issuer("POST", f"{boot.env['PKI_MOUNT']}/root/sign-intermediate", json={}),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)


# --- breakglass and ops-import ------------------------------------------------------------------------------

def test_breakglass_reads_and_decrypts_only(bao: BaoDevServer, breakglass: As, boot: Bootstrapped,
                                            credential: tuple[str, str]) -> None:
    org, path = credential
    read = breakglass("GET", f"{boot.kv}/data/{path}")
    assert read.status_code == 200 and read.json()["data"]["data"]["api_key"].startswith("sk-test-")
    context, plaintext = b64(org), b64(fake_key())
    enc = bao.api("POST", f"{boot.transit}/encrypt/byok", json={"plaintext": plaintext, "context": context})
    ciphertext = enc.json()["data"]["ciphertext"]
    dec = breakglass("POST", f"{boot.transit}/decrypt/byok", json={"ciphertext": ciphertext, "context": context})
    assert dec.status_code == 200 and dec.json()["data"]["plaintext"] == plaintext
    refused = [
        breakglass("POST", f"{boot.kv}/data/{path}", json={"data": {"api_key": fake_key()}}),
        breakglass("DELETE", f"{boot.kv}/data/{path}"),
        breakglass("POST", f"{boot.transit}/encrypt/byok", json={"plaintext": plaintext, "context": context}),
        breakglass("GET", f"{boot.kv}/data/byok-other-prefix/x"),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)


def test_ops_import_writes_but_cannot_read_back(ops_import: As, keyservice: As, boot: Bootstrapped) -> None:
    path = f"{boot.prefix}/imports/{uuid.uuid4().hex[:8]}"
    key = fake_key()
    assert ops_import("POST", f"{boot.kv}/data/{path}", json={"data": {"api_key": key}}).status_code == 200
    assert ops_import("POST", f"{boot.kv}/data/{path}", json={"data": {"api_key": fake_key()}}).status_code == 200
    refused = [
        ops_import("GET", f"{boot.kv}/data/{path}"),
        ops_import("GET", f"{boot.kv}/metadata/{path}"),
        ops_import("LIST", f"{boot.kv}/metadata/{boot.prefix}/imports"),
        ops_import("POST", f"{boot.kv}/data/{boot.prefix}/org-1/cred", json={"data": {"api_key": key}}),
    ]
    assert [r.status_code for r in refused] == [FORBIDDEN] * len(refused)
    # ...and keyservice, registering the import, can read it.
    assert keyservice("GET", f"{boot.kv}/data/{path}").json()["data"]["metadata"]["version"] == 2
