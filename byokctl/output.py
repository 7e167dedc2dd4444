"""Rendering results for byokctl: aligned tables for people, JSON for scripts.

JSON is protobuf's mapping with the proto field names, except that enum values are the words the tables show
(`"health": "unverified"`, `"key_source": "tenant"`, not `CREDENTIAL_HEALTH_UNSPECIFIED`), and text is UTF-8
(`"sk-…a211"`, not `"sk-\\u2026a211"`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

# Words for zero values where "unspecified" would mislead: a credential nobody has verified yet.
_ZERO_WORDS = {"CredentialHealth": "unverified"}


def enum_word(enum: EnumDescriptor, number: int) -> str:
    """The table's word for an enum value: its name without the type's prefix, lower case
    (CREDENTIAL_HEALTH_RATE_LIMITED -> rate_limited); 0 is "" unless the type has a word for it."""
    if number == 0:
        return _ZERO_WORDS.get(enum.name, "")
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)  # a value newer than this byokctl
    prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"
    return value.name.removeprefix(prefix).lower()


def to_dict(message: Message) -> dict[str, Any]:
    raw = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
                        use_integers_for_enums=True)
    return _words(message.DESCRIPTOR, raw)


def _words(descriptor: Any, value: dict[str, Any]) -> dict[str, Any]:
    """Replace enum numbers (recursively) in `value`, the dict form of a message of type `descriptor`."""
    for field in descriptor.fields:
        if field.name not in value:
            continue
        if field.enum_type is not None:
            convert: Any = lambda v, e=field.enum_type: enum_word(e, int(v))  # noqa: E731
        elif field.message_type is not None and not field.message_type.full_name.startswith("google.protobuf."):
            if field.message_type.GetOptions().map_entry:
                continue  # no map holds an enum or a message byokctl prints
            convert = lambda v, m=field.message_type: _words(m, v)  # noqa: E731
        else:
            continue
        item = value[field.name]
        value[field.name] = [convert(v) for v in item] if field.is_repeated else convert(item)
    return value


def emit_json(value: Any) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    elif isinstance(value, list):
        value = [to_dict(v) if isinstance(v, Message) else v for v in value]
    json.dump(value, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h).upper() for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value in ("", None) else str(value)
