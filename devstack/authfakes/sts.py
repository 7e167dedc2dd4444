"""A local AWS STS speaking the real Query API: GetSessionToken, AssumeRole and GetCallerIdentity, form-encoded
POSTs answered in STS's XML (namespace https://sts.amazonaws.com/doc/2011-06-15/), errors in its ErrorResponse.

Every request's SigV4 signature is checked with botocore (devstack/cloudfakes/sigv4.py recomputes it from what
arrived) against the key pairs the fake knows (`users`) or the session credentials it issued (`sessions`, which a
Bedrock stand-in can be told to accept). Refusals are STS's own: InvalidClientTokenId (an unknown key id),
SignatureDoesNotMatch (a wrong secret), AccessDenied (GetSessionToken with session credentials, a role the caller
may not assume or a wrong external id), ExpiredToken, ValidationError (a duration out of range); 403/400 as AWS
answers them.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from byokcommon.tls import TlsFiles
from devstack.authfakes.http import FakeHttpServer, Reply, Request
from devstack.authfakes.shapes import AccessKeyPair, session_triple
from devstack.cloudfakes.sigv4 import BAD_SIGNATURE, EXPIRED_TOKEN, INVALID_TOKEN, SessionCredentials, verify

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_FAR = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Role:
    arn: str
    trusted: frozenset[str]  # user ARNs allowed to assume it
    external_id: str = ""  # required when set


@dataclass
class Issued:
    credentials: SessionCredentials
    arn: str  # whose they are: the user, or the assumed role's session


@dataclass
class StsFake:
    """Serve with `server(tls)`. Thread-safe."""

    users: dict[str, AccessKeyPair] = field(default_factory=dict)  # by access key id
    roles: dict[str, Role] = field(default_factory=dict)  # by ARN
    issued: dict[str, Issued] = field(default_factory=dict)  # by access key id (ASIA…)
    calls: dict[str, int] = field(default_factory=dict)  # by Action
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sessions(self) -> dict[str, SessionCredentials]:
        """The session credentials issued so far, by access key id (what a Bedrock stand-in accepts)."""
        with self._lock:
            return {k: v.credentials for k, v in self.issued.items()}

    def add_user(self, pair: AccessKeyPair) -> AccessKeyPair:
        with self._lock:
            self.users[pair.access_key_id] = pair
        return pair

    def remove_user(self, access_key_id: str) -> None:
        """As deleting the access key in IAM: the key id becomes unknown (its sessions stay valid until expiry)."""
        with self._lock:
            self.users.pop(access_key_id, None)

    def server(self, tls: TlsFiles | None = None) -> FakeHttpServer:
        return FakeHttpServer(self.answer, tls=tls)

    def answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/":
            return _error(400, "Sender", "InvalidAction", "Could not find operation for the request")
        form = request.form
        action = form.get("Action", "")
        with self._lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            known = {k: SessionCredentials(k, u.secret_access_key, "", _FAR) for k, u in self.users.items()}
            known.update({k: v.credentials for k, v in self.issued.items()})
        region = _scope_region(request.headers.get("authorization", ""))
        refusal = verify(request.method, request.target, request.headers, request.body, known=known,
                         region=region, service="sts")
        if refusal is not None:
            return _refused(refusal)
        caller = _access_key_of(request.headers["authorization"])
        if form.get("Version") != "2011-06-15":
            return _error(400, "Sender", "InvalidAction", "Could not find operation for the request")
        if action == "GetCallerIdentity":
            return self._caller_identity(caller)
        if action == "GetSessionToken":
            return self._session_token(caller, form)
        if action == "AssumeRole":
            return self._assume_role(caller, form)
        return _error(400, "Sender", "InvalidAction", f"Could not find operation {escape(action)[:64]} for version "
                                                       "2011-06-15")

    def _arn_of(self, access_key_id: str) -> str:
        with self._lock:
            if access_key_id in self.users:
                return self.users[access_key_id].arn
            return self.issued[access_key_id].arn

    def _caller_identity(self, caller: str) -> Reply:
        arn = self._arn_of(caller)
        return _result("GetCallerIdentity", f"<Arn>{escape(arn)}</Arn><UserId>{caller}</UserId>"
                                            f"<Account>{arn.split(':')[4]}</Account>")

    def _session_token(self, caller: str, form: dict[str, str]) -> Reply:
        if caller not in self.users:
            return _error(403, "Sender", "AccessDenied", "Cannot call GetSessionToken with session credentials")
        duration = _duration(form, 900, 129600, 43200)
        if isinstance(duration, Reply):
            return duration
        issued = self._issue(duration, self.users[caller].arn)
        return _result("GetSessionToken", _credentials_xml(issued.credentials))

    def _assume_role(self, caller: str, form: dict[str, str]) -> Reply:
        caller_arn = self._arn_of(caller)
        role = self.roles.get(form.get("RoleArn", ""))
        session_name = form.get("RoleSessionName", "")
        wrong_id = bool(role and role.external_id and form.get("ExternalId") != role.external_id)
        if role is None or caller_arn not in role.trusted or wrong_id:
            resource = escape(form.get("RoleArn", ""))
            return _error(403, "Sender", "AccessDenied", f"User: {escape(caller_arn)} is not authorized to perform: "
                                                         f"sts:AssumeRole on resource: {resource}")
        if not 2 <= len(session_name) <= 64:
            return _error(400, "Sender", "ValidationError", "1 validation error detected: Value at 'roleSessionName' "
                                                            "failed to satisfy constraint: Member must have length "
                                                            "between 2 and 64")
        duration = _duration(form, 900, 43200, 3600)
        if isinstance(duration, Reply):
            return duration
        account, name = role.arn.split(":")[4], role.arn.rsplit("/", 1)[-1]
        session_arn = f"arn:aws:sts::{account}:assumed-role/{name}/{session_name}"
        issued = self._issue(duration, session_arn)
        role_id = "AROA" + issued.credentials.access_key_id[4:]
        return _result("AssumeRole", _credentials_xml(issued.credentials) +
                       f"<AssumedRoleUser><AssumedRoleId>{role_id}:{escape(session_name)}</AssumedRoleId>"
                       f"<Arn>{escape(session_arn)}</Arn></AssumedRoleUser>")

    def _issue(self, duration: int, arn: str) -> Issued:
        key_id, secret, token = session_triple()
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=duration)).replace(microsecond=0)
        issued = Issued(SessionCredentials(key_id, secret, token, expires), arn)
        with self._lock:
            self.issued[key_id] = issued
        return issued


def _duration(form: dict[str, str], low: int, high: int, default: int) -> int | Reply:
    raw = form.get("DurationSeconds", "")
    value = int(raw) if raw.isdigit() else default if not raw else -1
    if not low <= value <= high:
        return _error(400, "Sender", "ValidationError", f"1 validation error detected: Value at 'durationSeconds' "
                                                        f"failed to satisfy constraint: Member must have value "
                                                        f"between {low} and {high}")
    return value


def _scope_region(authorization: str) -> str:
    """The region the caller signed for (STS answers in every region; the signature must match the scope)."""
    credential = authorization.partition("Credential=")[2].split(",")[0]
    parts = credential.split("/")
    return parts[2] if len(parts) == 5 else ""


def _access_key_of(authorization: str) -> str:
    return authorization.partition("Credential=")[2].split("/")[0]


def _credentials_xml(c: SessionCredentials) -> str:
    expiration = c.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"<Credentials><AccessKeyId>{c.access_key_id}</AccessKeyId><SecretAccessKey>{escape(c.secret_access_key)}"
            f"</SecretAccessKey><SessionToken>{escape(c.session_token)}</SessionToken>"
            f"<Expiration>{expiration}</Expiration></Credentials>")


def _result(action: str, inner: str) -> Reply:
    body = (f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{inner}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>")
    return Reply(200, body.encode(), "text/xml")


def _error(status: int, kind: str, code: str, message: str) -> Reply:
    body = (f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return Reply(status, body.encode(), "text/xml")


def _refused(refusal: object) -> Reply:
    """The signature checker's refusal in STS's words (STS names them differently from Bedrock's runtime)."""
    if refusal == INVALID_TOKEN:
        return _error(403, "Sender", "InvalidClientTokenId", "The security token included in the request is invalid.")
    if refusal == EXPIRED_TOKEN:
        return _error(400, "Sender", "ExpiredToken", "The security token included in the request is expired")
    message = getattr(refusal, "message", BAD_SIGNATURE.message)
    code = "SignatureDoesNotMatch" if refusal == BAD_SIGNATURE or "Signature" in message else "IncompleteSignature"
    return _error(403, "Sender", code, escape(message))
