"""Checks on callers' chat requests; each failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import json
import re

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.errors import InvalidArgument

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+?=&-]{0,255}")
_PROVIDER = re.compile(r"[a-z_]{1,32}")
_CREDENTIAL = re.compile(r"cred_[0-9a-f]{24}")
MAX_MESSAGES = 2048
MAX_TOOLS = 256


def validate_parameters(p: pb.ChatParameters) -> None:
    t = p.tenant
    if not t.org_id:
        raise InvalidArgument("parameters.tenant.org_id", "is required")
    for name, value in (("org_id", t.org_id), ("project_id", t.project_id), ("user_id", t.user_id)):
        if value and (not _ID.fullmatch(value) or ".." in value):
            raise InvalidArgument(f"parameters.tenant.{name}", "must be 1-128 letters, digits and . _ : @ -")
    if not p.model and not p.provider:
        raise InvalidArgument("parameters.model", "model or provider is required")
    if p.model and not _MODEL.fullmatch(p.model):
        raise InvalidArgument("parameters.model", "must be at most 256 characters of letters, digits, . _ : / @ + -")
    if p.provider and not _PROVIDER.fullmatch(p.provider):
        raise InvalidArgument("parameters.provider", "must be a provider name such as openai")
    if p.credential_id and not _CREDENTIAL.fullmatch(p.credential_id):
        raise InvalidArgument("parameters.credential_id", "must look like cred_ followed by 24 hex digits")
    if not p.messages:
        raise InvalidArgument("parameters.messages", "at least one message is required")
    if len(p.messages) > MAX_MESSAGES:
        raise InvalidArgument("parameters.messages", f"at most {MAX_MESSAGES} messages")
    for i, m in enumerate(p.messages):
        if m.role == pb.ROLE_UNSPECIFIED or m.role not in pb.Role.values():
            raise InvalidArgument(f"parameters.messages[{i}].role", "must be system, user, assistant or tool")
        if m.role == pb.ROLE_TOOL and not m.tool_call_id:
            raise InvalidArgument(f"parameters.messages[{i}].tool_call_id", "is required for a tool result")
    if len(p.tools) > MAX_TOOLS:
        raise InvalidArgument("parameters.tools", f"at most {MAX_TOOLS} tools")
    for i, tool in enumerate(p.tools):
        if not tool.name:
            raise InvalidArgument(f"parameters.tools[{i}].name", "is required")
        if tool.parameters_json:
            try:
                schema = json.loads(tool.parameters_json)
            except ValueError:
                raise InvalidArgument(f"parameters.tools[{i}].parameters_json", "is not valid JSON") from None
            if not isinstance(schema, dict):
                raise InvalidArgument(f"parameters.tools[{i}].parameters_json", "must be a JSON object")
    if p.HasField("temperature") and not 0 <= p.temperature <= 2:
        raise InvalidArgument("parameters.temperature", "must be between 0 and 2")
    if p.HasField("max_tokens") and not 1 <= p.max_tokens <= 1_000_000:
        raise InvalidArgument("parameters.max_tokens", "must be between 1 and 1000000")
    if len(p.stop) > 16:
        raise InvalidArgument("parameters.stop", "at most 16 stop sequences")
    if len(p.request_id) > 128:
        raise InvalidArgument("parameters.request_id", "at most 128 characters")
