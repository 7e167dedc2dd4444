"""AWS: STS session credentials from an IAM user's stored access key pair, with botocore (its client signs the
request with SigV4 and parses STS's Query API XML).

GetSessionToken, or AssumeRole when the credential names a role (with its external id; the session is named
`byok-<credential id>`, which CloudTrail shows). The lifetime asked is BYOK_AWS_SESSION_SECONDS (default one
hour). The endpoint is the region's (https://sts.<region>.amazonaws.com), or BYOK_AWS_STS_ENDPOINT, checked
against the egress policy at start. The botocore session reads no configuration or credentials of its own: no
profile, config file, environment endpoint, CA bundle or proxy (Config(proxies={}) and an explicit `verify`).

Errors: STS refusing the key pair (InvalidClientTokenId, SignatureDoesNotMatch, AccessDenied, …) is
CredentialRejected; throttling, 5xx, timeouts and connection failures are Unavailable; anything else STS says is
FailedPrecondition naming its error code. botocore's exception text is never kept.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import botocore.config
import botocore.configprovider
import botocore.exceptions
import botocore.session

from byokcommon.egress import EgressPolicy
from keyservice.cloud_fields import DERIVE_STS
from keyservice.derive.cache import AwsSession, Derived
from keyservice.derive.settings import DeriveSettings, is_sts_host
from keyservice.errors import CredentialRejected, FailedPrecondition, InvalidArgument, Unavailable
from keyservice.providers import check_destination

# STS's answers that mean the stored credential itself is refused (an unknown or deactivated key id, a wrong
# secret, a role this user may not assume or whose external id does not match).
REJECTIONS = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "UnrecognizedClientException",
                        "ExpiredToken", "InvalidAccessKeyId"})
# STS's answers that say "try again later".
OUTAGES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
                     "InternalFailure", "InternalError", "RequestTimeout", "IDPCommunicationError"})
_CODE = re.compile(r"[A-Za-z0-9_.]{1,64}")

# botocore's failures to get an answer from STS (a test asserts each of botocore's exceptions is classified).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, SSLError
    botocore.exceptions.HTTPClientError,
)


class StsDeriver:
    """Thread-safe. One botocore session for the process (its service models load once); a client per derivation,
    since a client is bound to one key pair."""

    def __init__(self, settings: DeriveSettings, policy: EgressPolicy) -> None:
        self._settings = settings
        self._policy = policy
        self._lock = threading.Lock()
        self._session: Any = None

    def derive(self, credential_id: str, secret: Mapping[str, str], settings: Mapping[str, str]) -> Derived:
        region = settings["region"]
        endpoint = self._settings.aws_sts_endpoint or f"https://sts.{region}.amazonaws.com"
        try:  # checked at start too; again here, as every destination of a secret is
            check_destination(endpoint, self._policy, field="BYOK_AWS_STS_ENDPOINT", official=is_sts_host,
                              expected="an AWS STS host")
        except InvalidArgument as exc:
            raise FailedPrecondition(exc.message) from None
        client = self._client(secret, region)
        duration = self._settings.aws_session_seconds
        try:
            if settings.get("role_arn"):
                extra = {"ExternalId": settings["external_id"]} if settings.get("external_id") else {}
                answer = client.assume_role(RoleArn=settings["role_arn"], RoleSessionName=f"byok-{credential_id}",
                                            DurationSeconds=duration, **extra)
            else:
                answer = client.get_session_token(DurationSeconds=duration)
        except botocore.exceptions.ClientError as exc:
            raise _refusal(exc) from None
        except TRANSPORT_ERRORS:
            raise Unavailable("AWS STS is unreachable or did not answer in time") from None
        finally:
            client.close()
        c = answer["Credentials"]
        expires = c["Expiration"]
        expires = expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
        session = AwsSession(access_key_id=c["AccessKeyId"], secret_access_key=c["SecretAccessKey"],
                             session_token=c["SessionToken"], expires_at=expires.astimezone(dt.UTC))
        return Derived(DERIVE_STS, expires_at=session.expires_at, aws=session)

    def _client(self, secret: Mapping[str, str], region: str) -> Any:
        # Two attempts (a throttled or failed first one is retried after botocore's jittered backoff, at most 2 s),
        # each connecting and reading within a quarter of the derivation's timeout: about the timeout in all.
        quarter = self._settings.timeout_seconds / 4
        config = botocore.config.Config(
            connect_timeout=quarter, read_timeout=quarter, proxies={},
            retries={"mode": "standard", "total_max_attempts": 2}, ignore_configured_endpoint_urls=True,
            user_agent_appid="byok-keyservice")
        with self._lock:  # botocore sessions are not thread-safe; the clients they make are
            if self._session is None:
                self._session = _isolated_session()
            return self._session.create_client(
                "sts", region_name=region, endpoint_url=self._settings.aws_sts_endpoint or None,
                aws_access_key_id=secret["access_key_id"], aws_secret_access_key=secret["secret_access_key"],
                verify=self._settings.ca_file or True, config=config)


def _isolated_session() -> Any:
    """A botocore session that takes nothing from ~/.aws or AWS_* variables: every session variable botocore knows,
    with its environment variable removed and the config files pointed at /dev/null (a profile, an endpoint URL or
    a data path there could otherwise change where, and with what, keyservice calls STS)."""
    known: dict[str, Any] = botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES  # (sic: botocore's spelling)
    isolated = {name: (config_name, None, default, convert) for name, (config_name, _env, default, convert)
                in known.items()}
    for name in ("config_file", "credentials_file"):
        isolated[name] = (None, None, os.devnull, None)
    return botocore.session.Session(session_vars=isolated)


def _refusal(exc: botocore.exceptions.ClientError) -> Exception:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    code = code if _CODE.fullmatch(code) else "error"
    status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    if code in REJECTIONS:
        return CredentialRejected("AWS STS", code)
    if code in OUTAGES or status >= 500:
        return Unavailable(f"AWS STS is unavailable ({code})")
    return FailedPrecondition(f"AWS STS refused the request ({code})")
