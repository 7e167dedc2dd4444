"""Settings of the derivations (keyservice/derive/): where the clouds' token services are, whom to trust there,
how long a derived credential lives and how long a derivation may take. Part of KeyServiceSettings (`derive`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from byokcommon.egress import EgressPolicy
from keyservice import validation
from keyservice.providers import check_destination

# Microsoft's public authority; the STS endpoint is the region's own (botocore resolves it).
ENTRA_AUTHORITY_HOST = "https://login.microsoftonline.com"
_STS_HOST = re.compile(r"sts(-fips)?(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?")


@dataclass(frozen=True)
class DeriveSettings:
    # AWS STS endpoint for every region instead of the region's own (BYOK_AWS_STS_ENDPOINT), e.g. a VPC endpoint
    # or a test stand-in; it must be a host the egress policy allows. "" = https://sts.<region>.amazonaws.com.
    aws_sts_endpoint: str = ""
    # Lifetime asked of STS for session credentials (BYOK_AWS_SESSION_SECONDS, 900-43200): the longest a derived
    # AWS credential, once leased, stays usable at AWS whatever keyservice revokes (rotation, deactivation).
    aws_session_seconds: int = 3600
    # Entra ID authority host (BYOK_ENTRA_AUTHORITY_HOST), e.g. https://login.microsoftonline.us for Azure
    # Government, or a test stand-in an egress rule allows.
    entra_authority_host: str = ENTRA_AUTHORITY_HOST
    # PEM bundle trusted for the token endpoints instead of the system's (BYOK_CLOUD_AUTH_CA_FILE): a TLS-inspecting
    # egress proxy's CA, or a test CA. "" = the system's trust store.
    ca_file: str = ""
    # Longest one derivation may take, all its HTTP calls together (BYOK_DERIVE_TIMEOUT_SECONDS); past it the lease
    # fails with UNAVAILABLE.
    timeout_seconds: float = 10.0

    def check(self, policy: EgressPolicy) -> None:
        """InvalidArgument (naming the variable) unless each endpoint override is an https URL (http only to
        loopback in development) on the cloud's own hosts or one the egress policy allows: the stored secrets are
        sent there."""
        from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS  # Entra ID's own hosts, as MSAL knows them

        checks: list[tuple[str, str, Callable[[str], bool], str]] = [
            ("BYOK_AWS_STS_ENDPOINT", self.aws_sts_endpoint, is_sts_host, "an AWS STS host"),
            ("BYOK_ENTRA_AUTHORITY_HOST", self.entra_authority_host, WELL_KNOWN_AUTHORITY_HOSTS.__contains__,
             "an Entra ID authority host")]
        for name, url, official, expected in checks:
            if url:
                validation.api_base(url, name)
                check_destination(url, policy, field=name, official=official, expected=expected)


def is_sts_host(host: str) -> bool:
    """sts.amazonaws.com, sts.<region>.amazonaws.com(.cn), and their FIPS twins."""
    return _STS_HOST.fullmatch(host) is not None
