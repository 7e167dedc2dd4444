"""byokcommon: redaction, settings parsing, certificate identities, role checks."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
import structlog

from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.logging import redact_processor
from byokcommon.redaction import MASK, redact_text, redact_value
from byokcommon.settings import SettingsError, env_addr, env_bool, env_int
from byokcommon.tls import identity_from_pem
from keyservice.authz import RoleAuthorizer
from keyservice.errors import PermissionDenied
from keyservice.settings import KeyServiceSettings, parse_roles

KEYS = ["sk-proj-" + "Ab12" * 10, "sk-ant-api03-" + "Zz99" * 10, "AIza" + "SyD3" * 9, "gsk_" + "G7h8" * 10,
        "fw_" + "F1r3" * 6, "sk-or-v1-" + "0a1b" * 16, "hvs." + "T0k3n" * 6,
        "M1stRaLk3y" * 3 + "Qz",            # Mistral: 32 letters and digits, no prefix
        "9f3e" * 16,                         # Together: 64 hex digits
        # The cloud providers' secrets and what keyservice derives from them (fakes shaped like the real ones).
        "AKIA" + "Q3EXAMPLE7K2N4WZ",          # an IAM user's access key id (too short for the run rule)
        "ASIA" + "Y5EXAMPLE2M8P3QX",          # an STS session's access key id
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # a secret access key: 40 base64ish characters with slashes
        "IQoJb3JpZ2luX2VjEXAMPLE/session+token==",   # an STS session token
        "ya29.a0AfH6SMBexampleaccesstoken",          # a Google OAuth2 access token
        "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJleGFtcGxlIn0.c2lnbmF0dXJl",  # an Entra ID token (a JWT)
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"]


@pytest.mark.parametrize("key", KEYS)
def test_key_shapes_are_masked_in_text(key: str) -> None:
    out = redact_text(f"calling with {key} now")
    assert key not in out and MASK in out


@pytest.mark.parametrize("identifier", [
    "cred_" + "0123456789abcdef01234567",                    # credential id
    uuid.uuid4().hex, "lease_" + uuid.uuid4().hex,            # request, audit event and lease ids
    str(uuid.uuid4()),                                        # a caller's x-request-id
    "spiffe://byok.local/caller/chat-api",                    # peer identity
    "sha256:0123456789abcdef",                                # key fingerprint
])
def test_ids_the_services_log_stay_readable(identifier: str) -> None:
    assert redact_text(f"request {identifier} done") == f"request {identifier} done"


def test_long_opaque_tokens_are_masked_whole() -> None:
    token = "AbCdEfGh" * 5  # 40 letters, no known prefix
    assert redact_text(f"key={token}.") == f"key={MASK}." and redact_text(f"({token})") == f"({MASK})"


def test_sensitive_fields_are_masked_whatever_they_hold() -> None:
    out = redact_value({"api_key": "short", "nested": [{"token": "t"}], "ok": "fine"})
    assert out == {"api_key": MASK, "nested": [{"token": MASK}], "ok": "fine"}


def test_log_pipeline_masks_keys() -> None:
    with structlog.testing.capture_logs(processors=[redact_processor]) as logs:
        structlog.get_logger().info("event", detail=f"Bearer {KEYS[0]}", header=f"x-api-key: {KEYS[1]}")
    text = repr(logs)
    assert all(k not in text for k in KEYS[:2])


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="BYOK_X must be an integer"):
        env_int({"BYOK_X": "ten"}, "BYOK_X", 1, minimum=0, maximum=5)
    with pytest.raises(SettingsError, match="BYOK_X must be between 0 and 5"):
        env_int({"BYOK_X": "9"}, "BYOK_X", 1, minimum=0, maximum=5)
    with pytest.raises(SettingsError, match="BYOK_B must be true or false"):
        env_bool({"BYOK_B": "maybe"}, "BYOK_B", False)
    with pytest.raises(SettingsError, match="BYOK_A must be HOST:PORT"):
        env_addr({"BYOK_A": "nohost"}, "BYOK_A", "")
    with pytest.raises(SettingsError, match="BYOK_ROLES"):
        parse_roles("spiffe://x/y=root")


def test_approle_secret_id_from_a_file_stays_out_of_repr(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    secret = "7f3c1e2a-2f4b-4c1d-9a8e-000000000001"
    (tmp_path / "secret-id").write_text(secret + "\n")
    env = {"BYOK_TLS_CERT": str(tmp_path / "tls.crt"), "BYOK_TLS_KEY": str(tmp_path / "tls.key"),
           "BYOK_TLS_CA": str(tmp_path / "ca.crt"), "VAULT_ADDR": "http://127.0.0.1:8200",
           "BYOK_VAULT_AUTH": "approle", "BYOK_VAULT_ROLE_ID": "role", "BYOK_ROLES": "spiffe://x/admin=admin",
           "BYOK_VAULT_SECRET_ID_FILE": str(tmp_path / "secret-id"),
           "BYOK_DATABASE_URL": "postgresql://byok:hunter2-db-password@db/byok"}
    settings = KeyServiceSettings.from_env(env)
    assert settings.vault.secret_id == secret
    assert secret not in repr(settings) and "hunter2-db-password" not in repr(settings)
    with pytest.raises(SettingsError, match="BYOK_VAULT_SECRET_ID_FILE: cannot read"):
        KeyServiceSettings.from_env(env | {"BYOK_VAULT_SECRET_ID_FILE": str(tmp_path / "missing")})


def test_identity_is_the_spiffe_uri_and_a_cn_only_behind_the_fallback() -> None:
    ca = CertificateAuthority.create()
    with_uri, _ = ca.issue("svc", spiffe=spiffe_id("proxy"))
    cn_only, _ = ca.issue("plain-cn")
    assert identity_from_pem(with_uri) == "spiffe://byok.local/proxy"
    assert identity_from_pem(cn_only) == ""  # more in test_security_identity.py
    assert identity_from_pem(cn_only, cn_fallback=True) == "plain-cn"


def test_roles_gate_data_plane_and_management() -> None:
    authorize = RoleAuthorizer({"spiffe://byok.local/admin": "admin", "spiffe://byok.local/proxy": "proxy"})
    authorize("CreateCredential", "spiffe://byok.local/admin")
    authorize("IssueKeyLease", "spiffe://byok.local/proxy")
    for method, who in [("IssueKeyLease", "spiffe://byok.local/admin"), ("CreateCredential",
                        "spiffe://byok.local/proxy"), ("ListCredentials", ""), ("GetCredential", "other")]:
        with pytest.raises(PermissionDenied, match=method):
            authorize(method, who)


def test_base64_of_a_key_is_not_a_false_negative_source() -> None:
    # The redactor masks key shapes; base64 forms are caught by the leak tests scanning outputs instead.
    encoded = base64.b64encode(KEYS[0].encode()).decode()
    assert KEYS[0] not in redact_text(encoded)


def test_keyservice_takes_a_cn_only_as_identity_only_behind_its_setting(tmp_path: Path) -> None:
    """keyservice reads BYOK_IDENTITY_CN_FALLBACK like the proxy (off by default) and applies it at start."""
    from byokcommon import tls

    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    env = {"BYOK_TLS_CERT": str(tmp_path / "tls.crt"), "BYOK_TLS_KEY": str(tmp_path / "tls.key"),
           "BYOK_TLS_CA": str(tmp_path / "ca.crt"), "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t",
           "BYOK_ROLES": "spiffe://x/admin=admin"}
    assert KeyServiceSettings.from_env(env).identity_cn_fallback is False
    assert KeyServiceSettings.from_env(env | {"BYOK_IDENTITY_CN_FALLBACK": "1"}).identity_cn_fallback is True
    ca = CertificateAuthority.create()
    cn_only, _ = ca.issue("plain-cn")
    before = tls.IDENTITY_POLICY.cn_fallback
    try:
        tls.configure_identity(cn_fallback=True)
        assert identity_from_pem(cn_only) == "plain-cn"
    finally:
        tls.configure_identity(cn_fallback=before)
    assert identity_from_pem(cn_only) == ""
