"""Native passthrough: one request of a provider's own HTTP API, relayed with the tenant's leased key.

The HTTP front (`proxyservice/http/`) and the `Forward` RPC both hand a `NativeRequest` to `NativeRelay.open`
and relay the `NativeAnswer` it returns: the provider's status, its useful headers and its body's bytes, unchanged.
Path rules are in `paths`, header rules in `headers`, the usage read from relayed bytes in `usage_tap`.
"""

from proxyservice.native.relay import NativeAnswer, NativeRelay, NativeRequest

__all__ = ["NativeAnswer", "NativeRelay", "NativeRequest"]
