"""Stand-ins for the clouds' token services keyservice derives short-lived credentials from, which cannot be
reached from here: a local AWS STS (`sts`: GetSessionToken, AssumeRole, GetCallerIdentity in the Query API's XML,
SigV4 checked with botocore), Google's OAuth2 token endpoint (`google_token`: the service-account JWT grant, its
RS256 signature checked with google-auth) and Microsoft Entra ID (`entra`: instance and OpenID discovery, the
client-credentials token endpoint, AADSTS errors). `shapes` makes fake credentials shaped like real ones.

`AuthFakes.start(directory)` runs all three over https on loopback with a development CA (written to
`ca_file`; MSAL insists on https), and `keyservice_env()` names them to keyservice (BYOK_AWS_STS_ENDPOINT,
BYOK_ENTRA_AUTHORITY_HOST, BYOK_CLOUD_AUTH_CA_FILE); service-account keys name the Google stand-in in their
token_uri (`google.token_uri`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from byokcommon.devcerts import CertificateAuthority
from devstack.authfakes.entra import EntraFake
from devstack.authfakes.google_token import GoogleTokenFake
from devstack.authfakes.http import FakeHttpServer, Reply, Request
from devstack.authfakes.sts import Role, StsFake

__all__ = ["AuthFakes", "EntraFake", "FakeHttpServer", "GoogleTokenFake", "Reply", "Request", "Role", "StsFake"]


@dataclass
class AuthFakes:
    ca_file: str
    sts: StsFake
    google: GoogleTokenFake
    entra: EntraFake
    sts_server: FakeHttpServer
    google_server: FakeHttpServer
    entra_server: FakeHttpServer

    @classmethod
    def start(cls, directory: Path) -> AuthFakes:
        ca = CertificateAuthority.create("byok auth fakes CA")
        tls = ca.write_identity(directory, "authfakes")
        sts, google, entra = StsFake(), GoogleTokenFake(), EntraFake()
        return cls(tls.ca, sts, google, entra, sts.server(tls).start(), google.server(tls).start(),
                   entra.server(tls).start())

    @property
    def servers(self) -> tuple[FakeHttpServer, ...]:
        return self.sts_server, self.google_server, self.entra_server

    def keyservice_env(self) -> dict[str, str]:
        return {"BYOK_AWS_STS_ENDPOINT": self.sts_server.base_url,
                "BYOK_ENTRA_AUTHORITY_HOST": self.entra_server.base_url, "BYOK_CLOUD_AUTH_CA_FILE": self.ca_file}

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
