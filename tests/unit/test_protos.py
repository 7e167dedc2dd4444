"""The contract follows buf's style guide, checked on the .proto sources and their descriptors (buf itself is
not installable from the package registries here): every service, RPC, message, field, enum and enum value
carries a `//` comment; package = folder; services end in `Service`; each RPC has its own XRequest/XResponse;
enum values are prefixed with the enum's name and the zero value is X_UNSPECIFIED."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import FileDescriptor

from byok.keys.v1 import key_service_pb2
from byok.proxy.v1 import chat_service_pb2

ROOT = Path(__file__).resolve().parents[2] / "protos"
FILES: dict[str, FileDescriptor] = {
    "byok/keys/v1/key_service.proto": key_service_pb2.DESCRIPTOR,
    "byok/proxy/v1/chat_service.proto": chat_service_pb2.DESCRIPTOR,
}
# A declaration that must be documented: service, rpc, message, enum, oneof, field, enum value.
DECLARATION = re.compile(
    r"^\s*(service|rpc|message|enum|oneof)\s+\w+"
    r"|^\s*(repeated\s+|optional\s+)?[\w.]+(<[\w., ]+>)?\s+\w+\s*=\s*\d+"
    r"|^\s*[A-Z][A-Z0-9_]*\s*=\s*\d+"
)


def _snake_upper(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


@pytest.mark.parametrize("path", sorted(FILES))
def test_every_declaration_has_a_comment(path: str) -> None:
    lines = (ROOT / path).read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if not DECLARATION.match(line) or "//" in line:
            continue
        previous = next((p.strip() for p in reversed(lines[:number]) if p.strip()), "")
        if not previous.startswith("//"):
            undocumented.append(f"{path}:{number + 1}: {line.strip()}")
    assert undocumented == []


@pytest.mark.parametrize("path", sorted(FILES))
def test_buf_naming(path: str) -> None:
    file = FILES[path]
    assert path.rsplit("/", 1)[0].replace("/", ".") == file.package  # folder = package
    for service in file.services_by_name.values():
        assert service.name.endswith("Service")
        inputs = [m.input_type.name for m in service.methods]
        outputs = [m.output_type.name for m in service.methods]
        for method in service.methods:
            assert (method.input_type.name, method.output_type.name) == (f"{method.name}Request",
                                                                          f"{method.name}Response")
        assert len(set(inputs)) == len(inputs) and len(set(outputs)) == len(outputs)  # none shared
    enums = list(file.enum_types_by_name.values())
    for message in file.message_types_by_name.values():
        enums += list(message.enum_types)
    for enum in enums:
        prefix = _snake_upper(enum.name) + "_"
        assert all(v.name.startswith(prefix) for v in enum.values), enum.name
        assert enum.values_by_number[0].name == prefix + "UNSPECIFIED"
