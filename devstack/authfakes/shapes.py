"""Fake cloud credentials shaped like the real ones (every test key is a fake; none was ever valid anywhere):
AWS access key pairs, Bedrock and Azure API keys, Entra ID applications, Google service-account key files with a
freshly generated RSA key."""

from __future__ import annotations

import base64
import json
import secrets
import string
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_UPPER_ALNUM = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits


def _pick(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass(frozen=True)
class AccessKeyPair:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    account: str = "123456789012"
    user: str = "byok-test"

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:user/{self.user}"


def access_key_pair(user: str = "byok-test", account: str = "123456789012") -> AccessKeyPair:
    """AKIA + 16 upper-case letters and digits; a 40-character secret of letters, digits, '/' and '+'."""
    return AccessKeyPair("AKIA" + _pick(_UPPER_ALNUM, 16), _pick(_ALNUM + "/+", 40), account, user)


def session_triple() -> tuple[str, str, str]:
    """What STS issues: an ASIA… key id, a secret, and a long base64 session token (AWS's start with IQoJb3Jp…)."""
    token = "IQoJb3JpZ2luX2Vj" + base64.b64encode(secrets.token_bytes(300)).decode()
    return "ASIA" + _pick(_UPPER_ALNUM, 16), _pick(_ALNUM + "/+", 40), token


def bedrock_api_key() -> str:
    """A long-term Bedrock API key: ABSK followed by base64 (of 'BedrockAPIKey-…:…')."""
    inner = f"BedrockAPIKey-{_pick(string.ascii_lowercase + string.digits, 4)}-at-123456789012:" + \
        base64.b64encode(secrets.token_bytes(45)).decode()
    return "ABSK" + base64.b64encode(inner.encode()).decode()


def azure_api_key() -> str:
    """An Azure OpenAI key of today's 84-character form (letters and digits)."""
    return _pick(_ALNUM, 84)


@dataclass(frozen=True)
class EntraApp:
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


def entra_app() -> EntraApp:
    """GUIDs for the tenant and the application; a client secret like the portal's (3 characters, '8Q~', 34 more)."""
    secret = _pick(_ALNUM, 3) + "8Q~" + _pick(_ALNUM + "~._-", 34)
    return EntraApp(str(uuid.uuid4()), str(uuid.uuid4()), secret)


def service_account_key(token_uri: str, *, project_id: str = "byok-test-project", name: str = "byok-vertex") -> str:
    """A service account's JSON key file, as the console downloads it, with a new 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"{name}@{project_id}.iam.gserviceaccount.com"
    return json.dumps({
        "type": "service_account", "project_id": project_id, "private_key_id": secrets.token_hex(20),
        "private_key": pem, "client_email": email, "client_id": str(secrets.randbelow(10**21)).zfill(21),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }, indent=2)
