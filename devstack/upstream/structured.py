"""Structured outputs: which schema a request asks the answer to follow (`requested`), a minimal JSON document that
validates against it (`instance`), and OpenAI's strict-mode schema rules (`openai_strict_problem`).

Where each provider takes the schema:
- OpenAI Chat Completions ``response_format`` {type: json_schema, json_schema: {name, schema, strict}} or
  {type: json_object} (https://platform.openai.com/docs/guides/structured-outputs); the Responses API ``text.format``
  {type: json_schema, name, schema, strict}. With ``strict: true`` every object must set ``additionalProperties:
  false`` and list all its properties in ``required`` (OpenAI's 400 "Invalid schema for response_format '<name>': In
  context=(…), …"), and the root must be an object; ``json_object`` needs the word "json" in the messages.
- Anthropic ``output_config.format`` {type: json_schema, schema} (GA), or the beta's top-level ``output_format`` of
  the same shape, which needs the ``anthropic-beta: structured-outputs-2025-11-13`` header
  (https://docs.claude.com/en/docs/build-with-claude/structured-outputs).
- Gemini ``generationConfig.responseMimeType: application/json`` with ``responseSchema`` (the OpenAPI subset: type
  names may be upper case, ``nullable``) or ``responseJsonSchema`` (JSON Schema); ``text/x.enum`` answers the first
  enum value (https://ai.google.dev/gemini-api/docs/structured-output).

The instance holds every declared property (required or not) with a value of its type: the first ``enum`` /
``const`` value, strings that meet ``format`` and ``minLength``, numbers inside their bounds, arrays of
``minItems`` (at least one) items; ``$ref`` (to ``$defs`` / ``definitions``), ``anyOf`` / ``oneOf`` (the first
branch) and ``allOf`` (merged) are followed, recursion stops at a depth of 8 with the smallest value allowed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from devstack.upstream.wire import proto_field

_FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00", "email": "a@example.com",
            "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000", "hostname": "example.com",
            "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "duration": "P1D"}
_MAX_DEPTH = 8


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follows a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``, ``#``) to the schema it names."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        node: Any = root
        for key in schema["$ref"].lstrip("#").strip("/").split("/"):
            if key:
                node = node.get(key.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
        schema, seen = node, seen + 1
    return schema if isinstance(schema, dict) else {}


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first non-null type
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    return "array" if "items" in schema else ""


def _string(schema: dict[str, Any]) -> str:
    value = _FORMATS.get(str(schema.get("format")), "alpha")
    low = schema.get("minLength")
    if isinstance(low, int) and len(value) < low:
        value += "a" * (low - len(value))
    high = schema.get("maxLength")
    return value[:high] if isinstance(high, int) else value


def _bound(schema: dict[str, Any], *names: str) -> float | None:
    values = [schema[n] for n in names if isinstance(schema.get(n), int | float) and not isinstance(schema[n], bool)]
    return float(values[0]) if values else None


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    """1 when unbounded, else a value strictly inside the bounds (the middle of two; next to one)."""
    low, high = _bound(schema, "minimum", "exclusiveMinimum"), _bound(schema, "maximum", "exclusiveMaximum")
    if low is not None and high is not None:
        value = (low + high) / 2
    else:
        value = low + 1 if low is not None else high - 1 if high is not None else 1.0
    if not integer:
        return value
    whole = math.floor(value)
    if low is not None and (whole < low or (whole == low and "exclusiveMinimum" in schema)):
        whole += 1
    return whole


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    keys = [k for k in (schema.get("propertyOrdering") or props) if k in props]
    if depth >= _MAX_DEPTH:
        keys = [k for k in keys if k in required]
    return {k: _value(props[k], root, depth + 1) for k in keys}


def _value(schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key) or () if _type_of(_resolve(b, root)) != "null"]
        if branches:
            return _value(branches[0], root, depth)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            merged.setdefault("properties", {}).update(part.get("properties") or {})
        return _value(merged, root, depth)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        count = max(int(schema.get("minItems") or 0), 0 if depth >= _MAX_DEPTH else 1)
        if schema.get("maxItems") == 0:
            count = 0
        return [_value(schema.get("items") or {}, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def instance(schema: Any) -> Any:
    """A minimal JSON value that validates against ``schema`` (see the module docstring)."""
    root = schema if isinstance(schema, dict) else {}
    return _value(root, root)


def document(schema: Any) -> str:
    """The answer text for a structured request: `instance` as compact JSON."""
    return json.dumps(instance(schema), separators=(",", ":"))


def _openai_format(payload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    if kind == "responses":
        fmt = (payload.get("text") or {}).get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":  # the Responses API flattens json_schema
            return {"type": "json_schema", "json_schema": fmt}
        return fmt if isinstance(fmt, dict) else None
    fmt = payload.get("response_format")
    return fmt if isinstance(fmt, dict) else None


def requested(family: str, payload: dict[str, Any], kind: str = "chat") -> tuple[bool, Any]:
    """(whether the answer must be JSON, the schema it must follow or None) for a request of any family."""
    if family == "openai":
        fmt = _openai_format(payload, kind) or {}
        if fmt.get("type") == "json_schema":
            return True, (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return fmt.get("type") == "json_object", None
    if family == "anthropic":
        given = (payload.get("output_config") or {}).get("format") or payload.get("output_format")
        if isinstance(given, dict) and given.get("type") == "json_schema":
            return True, given.get("schema") or {"type": "object"}
        return False, None
    config = proto_field(payload, "generationConfig") or {}
    mime = proto_field(config, "responseMimeType")
    schema = proto_field(config, "responseJsonSchema") or proto_field(config, "responseSchema")
    if mime == "text/x.enum" and isinstance(schema, dict):
        return True, schema
    return mime == "application/json", schema


def answer_text(family: str, payload: dict[str, Any], kind: str = "chat") -> str | None:
    """The whole answer text a structured request gets, or None when the request asks for free text."""
    wants_json, schema = requested(family, payload, kind)
    if not wants_json:
        return None
    if family == "gemini" and proto_field(proto_field(payload, "generationConfig"), "responseMimeType") == \
            "text/x.enum":
        return str(instance(schema))  # the enum value itself, not JSON
    return document(schema) if schema is not None else "{}"


def _strict_problem(schema: Any, root: dict[str, Any], path: tuple[str, ...], depth: int = 0) -> str:
    """The first object in ``schema`` that breaks OpenAI's strict-mode rules, in OpenAI's words ("" when none)."""
    if not isinstance(schema, dict) or depth > 32:
        return ""
    if _type_of(schema) == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return f"In context={path!r}, 'additionalProperties' is required to be supplied and to be false."
        missing = [k for k in schema.get("properties") or {} if k not in (schema.get("required") or ())]
        if missing:
            return (f"In context={path!r}, 'required' is required to be supplied and to be an array including every "
                    f"key in properties. Missing '{missing[0]}'.")
    children: list[tuple[tuple[str, ...], Any]] = [
        ((*path, "properties", k), v) for k, v in (schema.get("properties") or {}).items()]
    if "items" in schema:
        children.append(((*path, "items"), schema["items"]))
    for key in ("anyOf", "allOf", "oneOf"):
        children += [((*path, key, str(i)), v) for i, v in enumerate(schema.get(key) or ())]
    for key in ("$defs", "definitions"):
        children += [((*path, key, k), v) for k, v in (schema.get(key) or {}).items()]
    for at, child in children:
        problem = _strict_problem(child, root, at, depth + 1)
        if problem:
            return problem
    return ""


def openai_strict_problem(schema: Any) -> str:
    """Why OpenAI refuses ``schema`` under ``strict: true`` ("" when it accepts it)."""
    if not isinstance(schema, dict):
        return "schema must be a JSON Schema object."
    if _type_of(schema) != "object":
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{_type_of(schema) or 'None'}\"'."
    return _strict_problem(schema, schema, ())
