"""Which paths of a provider's API a native request may name, and the URL they make under the lease's root.

The root is the provider's API root as its official SDK knows it (`native_root`): the lease's api_base as
byokcommon/wire.py's `sdk_root` makes it, a Bedrock runtime's host as is (boto3 sends `/model/{id}/converse`), an
Azure OpenAI resource's endpoint (its SDKs send `/openai/deployments/…` or `/openai/v1/…`), Vertex AI's location
host (google-genai sends `/v1beta1/projects/…`).

A path is taken as the caller sent it (percent-encoded), and refused unless it is plainly a path under the root:
it starts with "/", holds no dot segment ("." or "..", raw or percent-encoded), no encoded slash or backslash,
no empty segment, no control character, and is not an absolute URL. So joined to the root it can never leave the
provider's host nor climb above its root. Ops may restrict each provider to some paths (`PathAllowlist`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from byok.keys.v1 import key_service_pb2 as kpb
from byokcommon.wire import AZURE_OPENAI, sdk_root
from proxyservice import errors
from proxyservice.adapters.gemini import VERTEX_AI, vertex_api_base
from proxyservice.adapters.openai import azure_endpoint

# Provider names as the catalog spells them; anything else is not a provider (and never reaches keyservice).
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_PATH = 2048
# Percent-encodings that would turn into a separator or a dot once a server decodes them.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\#]")


def check_path(path: str) -> str:
    """The path, unchanged, if it is safe to join to the provider's root; else InvalidArgument naming why."""
    if not path.startswith("/") or path.startswith("//"):
        raise errors.InvalidArgument("path", "must be a path under the provider's API root, starting with one '/'")
    if len(path) > _MAX_PATH:
        raise errors.InvalidArgument("path", f"is longer than {_MAX_PATH} characters")
    if "://" in path:
        raise errors.InvalidArgument("path", "must not be an absolute URL")
    if _UNSAFE.search(path):
        raise errors.InvalidArgument("path", "contains a control character, a space, a backslash or a '#'")
    if _ENCODED_SEPARATOR.search(path):
        raise errors.InvalidArgument("path", "contains an encoded '/', '\\', '.' or NUL")
    segments = unquote(path).split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise errors.InvalidArgument("path", "contains a '.' or '..' segment")
    if any(not segment for segment in segments[:-1]):
        raise errors.InvalidArgument("path", "contains an empty segment ('//')")
    return path


def native_root(lease: kpb.IssueKeyLeaseResponse) -> str:
    """The root a lease's native requests go under (see the module docstring)."""
    if lease.provider == AZURE_OPENAI:
        return azure_endpoint(lease.settings, lease.api_base)
    if lease.provider == VERTEX_AI and not lease.api_base:
        return sdk_root("gemini", vertex_api_base(lease.settings.get("location", "global")))
    return sdk_root(lease.api_family, lease.api_base)


def upstream_url(root: str, path: str, query: str) -> str:
    """The provider URL for a checked path: the root, the path, and the query without any `key` parameter (keys
    never travel in URLs; the lease's key goes in the provider's header)."""
    kept = "&".join(p for p in query.split("&") if p and p.split("=", 1)[0] != "key") if query else ""
    return f"{root}{path}?{kept}" if kept else root + path


@dataclass(frozen=True)
class PathAllowlist:
    """Per provider, the paths under its root that may be called (`/chat/completions`; a trailing `*` matches a
    prefix: `/v1/messages*`). A provider without an entry is unrestricted; the empty allowlist restricts none."""

    rules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, name: str = "BYOK_HTTP_PATH_ALLOWLIST") -> PathAllowlist:
        """`openai=/chat/completions,/embeddings,/responses*;anthropic=/v1/messages*`."""
        rules: dict[str, tuple[str, ...]] = {}
        for entry in filter(None, (part.strip() for part in text.split(";"))):
            provider, eq, patterns = entry.partition("=")
            provider = provider.strip()
            if not eq or not PROVIDER_NAME.fullmatch(provider):
                raise ValueError(f"{name}: expected provider=/path,/prefix*;… got {entry[:80]!r}")
            items = tuple(p.strip() for p in patterns.split(",") if p.strip())
            for item in items:
                if not item.startswith("/") or "*" in item[:-1]:
                    raise ValueError(f"{name}: {provider}: a pattern is a path starting with '/', with '*' only at "
                                     f"its end; got {item[:80]!r}")
            rules[provider] = items
        return cls(rules)

    def allows(self, provider: str, path: str) -> bool:
        patterns = self.rules.get(provider)
        if patterns is None:
            return True
        bare = unquote(path)
        return any(bare.startswith(p[:-1]) if p.endswith("*") else bare == p for p in patterns)
