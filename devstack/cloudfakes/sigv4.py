"""Checking a request's AWS Signature Version 4 as an AWS service does, with botocore computing the signature.

The fake is told which temporary credentials are valid (`SessionCredentials`: what a local STS issued, or what a
test leased). For a request it reads the `Authorization` header (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/
SERVICE/aws4_request, SignedHeaders=…, Signature=…`), finds the credentials by access key id, checks the session
token, their expiry, the scope (date, region, service) and the request time (`x-amz-date`, within AWS's 5 minutes),
then rebuilds the canonical request from what arrived — the method, the path and query exactly as sent, the signed
headers only, the body — and lets botocore's `SigV4Auth` compute the signature the caller should have sent. Each
refusal is AWS's own: its error type and message, and its HTTP status.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

MAX_SKEW = datetime.timedelta(minutes=5)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class SessionCredentials:
    """Temporary credentials the fake accepts until `expires_at` (aware UTC)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expires_at: datetime.datetime


@dataclass(frozen=True)
class Refusal:
    """AWS's answer to a request it does not authenticate."""

    status: int
    error_type: str
    message: str


INVALID_TOKEN = Refusal(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
EXPIRED_TOKEN = Refusal(403, "ExpiredTokenException", "The security token included in the request is expired")
MISSING = Refusal(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
BAD_SIGNATURE = Refusal(403, "InvalidSignatureException",
                        "The request signature we calculated does not match the signature you provided. Check your "
                        "AWS Secret Access Key and signing method. Consult the service documentation for details.")


def _fields(authorization: str) -> dict[str, str] | None:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    parts = dict(item.strip().partition("=")[::2] for item in rest.split(","))
    return parts if {"Credential", "SignedHeaders", "Signature"} <= parts.keys() else None


def verify(method: str, target: str, headers: Mapping[str, str], body: bytes, *,
           known: Mapping[str, SessionCredentials], region: str, service: str = "bedrock",
           now: datetime.datetime | None = None) -> Refusal | None:
    """None when the request is signed by valid credentials for this region and service; else AWS's refusal.
    `headers` have lower-case names; `target` is the request target as sent (path and query)."""
    fields = _fields(headers.get("authorization", ""))
    if fields is None:
        return MISSING
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return Refusal(403, "IncompleteSignatureException", "Credential should be scoped to a valid region.")
    creds = known.get(scope[0])
    if creds is None or not hmac.compare_digest(headers.get("x-amz-security-token", ""), creds.session_token):
        return INVALID_TOKEN
    now = now or datetime.datetime.now(datetime.UTC)
    if now >= creds.expires_at:
        return EXPIRED_TOKEN
    if scope[2] != region or scope[3] != service:
        return Refusal(403, "InvalidSignatureException",
                       f"Credential should be scoped to a valid region and service ({region}, {service}).")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(stamp, _TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return Refusal(403, "IncompleteSignatureException", "Authorization header requires existence of a valid "
                                                             "X-Amz-Date header.")
    if abs(now - when) > MAX_SKEW or stamp[:8] != scope[1]:
        return Refusal(403, "InvalidSignatureException", "Signature expired: the request time is too far from "
                                                         "the server's.")
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed:
        return BAD_SIGNATURE
    request = AWSRequest(method=method, url=f"http://{headers.get('host', '')}{target}",
                         headers={name: headers.get(name, "") for name in signed}, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(ReadOnlyCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
                       service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return None if hmac.compare_digest(expected, fields["Signature"]) else BAD_SIGNATURE
