"""`byokctl keys …`: add, import, list, get, update, rotate, activate, deactivate, verify, delete.

A cloud credential (bedrock, azure_openai, vertex_ai; `byokctl providers` and ListProviders name the fields) is
given as `--setting NAME=VALUE` (repeatable; region, endpoint, …) and `--secret-field NAME=@FILE` or `NAME=-`
(stdin, for one field), never a secret's value on the command line, where `ps` and shell history would keep it.
Without --secret-field, the one API key is read from stdin or a prompt as for every provider.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.inputs import UsageError, read_secret, scope_of
from byokctl.output import emit_json, emit_table, enum_word


def health(value: int) -> str:
    return enum_word(kpb.CredentialHealth.DESCRIPTOR, value)


def show_credentials(args: argparse.Namespace, creds: list[kpb.Credential]) -> None:
    if getattr(args, "id_only", False):
        for c in creds:
            print(c.credential_id)
        return
    if args.json:
        emit_json(creds if len(creds) != 1 or args.command == "keys" and args.action == "list" else creds[0])
        return
    emit_table(["id", "provider", "org", "project", "user", "name", "active", "primary", "health", "key",
                "version", "transit", "vault path", "settings"],
               [[c.credential_id, c.provider, c.scope.org_id, c.scope.project_id, c.scope.user_id, c.name,
                 c.active, c.primary, health(c.health), c.key_hint, c.secret_ref.version,
                 f"{c.secret_ref.transit_key}:v{c.secret_ref.transit_key_version}" if c.secret_ref.transit_key
                 else "", f"{c.secret_ref.mount}/{c.secret_ref.path}",
                 " ".join(f"{k}={v}" for k, v in sorted(c.settings.items()))] for c in creds])


def cmd_keys(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    a = args.action
    if a == "add":
        fields = secret_fields(args.secret_field)
        key = "" if fields else read_secret(f"{_display_name(stub, args)} API key: ")
        reply = stub.CreateCredential(kpb.CreateCredentialRequest(
            provider=args.provider, scope=scope_of(args), name=args.name, api_key=key, api_base=args.api_base or "",
            default_model=args.default_model or "", primary=args.primary, secret_fields=fields,
            settings=settings_of(args.setting)), timeout=args.timeout)
        show_credentials(args, [reply.credential])
    elif a == "import":
        reply = stub.RegisterCredential(kpb.RegisterCredentialRequest(
            provider=args.provider, scope=scope_of(args), name=args.name, vault_path=args.vault_path,
            api_base=args.api_base or "", default_model=args.default_model or "", primary=args.primary,
            settings=settings_of(args.setting)), timeout=args.timeout)
        show_credentials(args, [reply.credential])
    elif a == "list":
        creds: list[kpb.Credential] = []
        token = ""
        active = {"yes": True, "no": False}.get(args.active or "")
        while True:
            request = kpb.ListCredentialsRequest(org_id=args.org or "", project_id=args.project or "",
                                                 user_id=args.user or "", provider=args.provider or "",
                                                 page_size=200, page_token=token)
            if active is not None:
                request.active = active
            reply = stub.ListCredentials(request, timeout=args.timeout)
            creds.extend(reply.credentials)
            token = reply.next_page_token
            if not token:
                break
        show_credentials(args, creds)
    elif a == "get":
        show_credentials(args, [stub.GetCredential(kpb.GetCredentialRequest(credential_id=args.id),
                                                    timeout=args.timeout).credential])
    elif a == "update":
        update = kpb.UpdateCredentialRequest(credential_id=args.id)
        for field in ("name", "api_base", "default_model"):
            if getattr(args, field) is not None:
                setattr(update, field, getattr(args, field))
        if args.primary is not None:
            update.primary = args.primary == "yes"
        show_credentials(args, [stub.UpdateCredential(update, timeout=args.timeout).credential])
    elif a == "rotate":
        fields = secret_fields(args.secret_field)
        key = "" if fields else read_secret("new API key: ")
        reply = stub.RotateCredentialSecret(kpb.RotateCredentialSecretRequest(
            credential_id=args.id, api_key=key, expected_version=args.expected_version or 0, secret_fields=fields),
            timeout=args.timeout)
        show_credentials(args, [reply.credential])
    elif a in ("activate", "deactivate"):
        rpc = stub.ActivateCredential if a == "activate" else stub.DeactivateCredential
        req_type = kpb.ActivateCredentialRequest if a == "activate" else kpb.DeactivateCredentialRequest
        show_credentials(args, [rpc(req_type(credential_id=args.id), timeout=args.timeout).credential])
    elif a == "delete":
        stub.DeleteCredential(kpb.DeleteCredentialRequest(credential_id=args.id), timeout=args.timeout)
        emit_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
    elif a == "verify":
        reply = stub.VerifyCredential(kpb.VerifyCredentialRequest(credential_id=args.id), timeout=args.timeout)
        if args.json:
            emit_json(reply)
        else:
            print(f"{args.id}: {health(reply.credential.health)} (HTTP {reply.http_status or 'no answer'})")


def _display_name(stub: kpb_grpc.KeyServiceStub, args: argparse.Namespace) -> str:
    """"OpenAI" for openai, for the prompt; asked only when a person will see the prompt (stdin a terminal)."""
    if not sys.stdin.isatty():
        return args.provider
    providers = stub.ListProviders(kpb.ListProvidersRequest(), timeout=args.timeout).providers
    return next((p.display_name for p in providers if p.name == args.provider and p.display_name), args.provider)


def settings_of(items: list[str] | None) -> dict[str, str]:
    """`--setting NAME=VALUE` options as a map (a name given twice is a mistake, not an override)."""
    settings: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--setting: expected NAME=VALUE, got {item[:40]!r}")
        if name in settings:
            raise UsageError(f"--setting: {name} given twice")
        settings[name] = value
    return settings


def secret_fields(items: list[str] | None) -> dict[str, str]:
    """`--secret-field NAME=@FILE` (the file's contents, surrounding white space dropped) or `NAME=-` (stdin, for
    one field at most). A value on the command line is refused without being repeated."""
    fields: dict[str, str] = {}
    if sum(item.endswith("=-") for item in items or []) > 1:
        raise UsageError("--secret-field: only one field can come from stdin (-); give the others as @FILE")
    for item in items or []:
        name, sep, source = item.partition("=")
        if not sep or not name:
            raise UsageError("--secret-field: expected NAME=@FILE or NAME=- (stdin)")
        if name in fields:
            raise UsageError(f"--secret-field: {name} given twice")
        if source == "-":
            fields[name] = _stdin_secret(name)
        elif source.startswith("@") and len(source) > 1:
            fields[name] = _file_secret(name, Path(source[1:]))
        else:
            raise UsageError(f"--secret-field {name}: give the value as @FILE or - (stdin), never on the command "
                             "line (ps and shell history would keep it)")
    return fields


def _stdin_secret(name: str) -> str:
    value = (read_secret(f"{name}: ") if sys.stdin.isatty() else sys.stdin.read()).strip()
    if not value:
        raise UsageError(f"--secret-field {name}=-: nothing on stdin")
    return value


def _file_secret(name: str, path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--secret-field {name}: cannot read {path} ({getattr(exc, 'strerror', None) or 'not UTF-8'})"
                         ) from None
    if not value:
        raise UsageError(f"--secret-field {name}: {path} is empty")
    return value
