"""byokctl as operators run it: `python -m byokctl` in a subprocess against a real keyservice (on the real
OpenBao), a proxy and the local provider upstream. Every subcommand in table and `--json` form, the exit codes
scripts rely on, secrets only from stdin, the connection from flags or the environment.

This module also holds the small harness the other operations tests share (test_operations.py,
test_cert_reload.py): `ServiceLoop` runs the in-process services on an event loop in a background thread, so
tests can block on subprocesses (byokctl, the vault CLI) while the services keep answering.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from byokcommon.tls import TlsFiles
from byokctl.cli import build_parser
from devstack.ports import free_port
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.server import KeyServiceApp, create_server
from proxyservice.server import ProxyApp
from proxyservice.server import create_server as create_proxy
from tests.support.bao import BaoDevServer
from tests.support.stack import (
    ADMIN,
    Identities,
    keyservice_settings,
    proxy_settings,
    upstream_base_urls,
)

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# -- harness (shared with test_operations.py and test_cert_reload.py) ---------------------------------------
class ServiceLoop:
    """An asyncio loop in a daemon thread hosting in-process services (keyservice, proxies, upstream)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="services", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def client_env(keyservice_port: int, files: TlsFiles, proxy_port: int = 0) -> dict[str, str]:
    """What `source .byok/env` gives an operator: where keyservice is, and the admin certificate."""
    env = {"BYOK_KEYSERVICE_ADDR": f"localhost:{keyservice_port}", "BYOK_CLIENT_CERT": files.cert,
           "BYOK_CLIENT_KEY": files.key, "BYOK_CA": files.ca}
    if proxy_port:
        env["BYOK_PROXY_ADDR"] = f"localhost:{proxy_port}"
    return env


def byokctl(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process; the environment holds only what is given (plus PATH etc.)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BYOK_", "VAULT_", "BAO_"))}
    return subprocess.run([sys.executable, "-m", "byokctl", *args], input=stdin, env=base | env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}"
    return run.stdout


def ok_json(run: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(run))


def fake_openai_key() -> str:
    """Shaped like a real OpenAI project key, and random."""
    return "sk-proj-" + secrets.token_urlsafe(36).replace("-", "a").replace("_", "b")


def table(output: str) -> list[dict[str, str]]:
    """Parse byokctl's aligned table back into rows keyed by lower-case header (columns split on 2+ spaces)."""
    import re

    lines = [line for line in output.splitlines() if line.strip()]
    headers = [h.lower() for h in re.split(r"\s{2,}", lines[0].strip())]
    return [dict(zip(headers, re.split(r"\s{2,}", line.strip()), strict=False)) for line in lines[1:]]


# -- the module's system ------------------------------------------------------------------------------------
@dataclass
class Cli:
    ids: Identities
    services: ServiceLoop
    upstream: FakeUpstream
    keyservice: KeyServiceApp
    proxy: ProxyApp
    env: dict[str, str]
    kv_prefix: str

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return byokctl(*args, env=self.env | env, stdin=stdin)


@pytest.fixture(scope="module")
def cli(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("byokctl")
    ids = Identities.create(tmp / "certs")
    services = ServiceLoop()
    upstream = FakeUpstream(UpstreamConfig())
    services.run(upstream.start())
    settings = keyservice_settings(bao, ids, f"sqlite:///{tmp}/ks.db",
                                   provider_base_urls=upstream_base_urls(upstream.base_url))
    keyservice = services.run(create_server(settings))
    proxy = services.run(create_proxy(proxy_settings(ids, keyservice.port)))
    try:
        yield Cli(ids=ids, services=services, upstream=upstream, keyservice=keyservice, proxy=proxy,
                  env=client_env(keyservice.port, ids.admin, proxy.port), kv_prefix=settings.vault.kv_prefix)
    finally:
        services.run(proxy.stop(grace=0))
        services.run(keyservice.stop(grace=0))
        services.run(upstream.stop())
        services.close()


# -- tests --------------------------------------------------------------------------------------------------
def test_help_shows_examples_and_no_flag_takes_a_key(cli: Cli) -> None:
    top = ok(cli("--help"))
    assert "Examples:" in top and "Exit codes:" in top and "BYOK_KEYSERVICE_ADDR" in top
    sub = ok(cli("keys", "add", "--help"))
    assert "examples:" in sub and "byokctl keys add --org acme" in sub
    # Every leaf command documents examples (checked in-process: the parser is the same object).
    parser = build_parser()
    leaves = _leaf_parsers(parser)
    assert len(leaves) == 30  # 19, embed, usage, prices list/set/reprice, budgets and limits set/list/delete
    for path, leaf in leaves.items():
        examples = leaf.format_help().partition("\nexamples:\n")[2]
        assert f"byokctl {path}" in examples, path
    # Secrets come from stdin only: neither `keys add` nor `keys rotate` has an option that takes the key.
    for path in ("keys add", "keys rotate"):
        dests = {a.dest for a in leaves[path]._actions}
        assert not dests & {"api_key", "secret", "value", "token", "password"}, dests
    assert dests == {"help", "id", "expected_version", "secret_field", "addr", "proxy_addr", "cert", "key", "ca",
                     "server_name", "timeout", "json"}  # `--key`: the client certificate's private key file;
    # `--secret-field NAME=@FILE|NAME=-` names where a cloud secret comes from, never the value
    refused = cli("keys", "add", "--org", "o", "--provider", "openai", "--name", "n", "--api-key", "x")
    assert refused.returncode == 2 and "unrecognized arguments: --api-key" in refused.stderr


def _leaf_parsers(parser: Any, prefix: str = "") -> dict[str, Any]:
    import argparse

    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{prefix} {name}".strip()
                found.update(_leaf_parsers(child, path) or {path: child})
    return found


def test_keys_lifecycle_in_tables_and_json(cli: Cli) -> None:
    key, second, rotated = fake_openai_key(), fake_openai_key(), fake_openai_key()
    added = table(ok(cli("keys", "add", "--org", "life", "--provider", "openai", "--name", "main", stdin=key)))
    assert len(added) == 1 and added[0]["provider"] == "openai" and added[0]["key"] == "sk-…" + key[-4:]
    cid = added[0]["id"]
    assert cid.startswith("cred_") and added[0]["version"] == "1" and added[0]["active"] == "yes"
    other = ok_json(cli("keys", "add", "--org", "life", "--provider", "openai", "--name", "backup",
                        "--default-model", "gpt-4o-mini", "--json", stdin=second + "\n"))
    assert other["name"] == "backup" and other["scope"]["org_id"] == "life" and "api_key" not in other

    listed = cli("keys", "list", "--org", "life")
    assert {row["name"] for row in table(ok(listed))} == {"main", "backup"}
    as_json = ok_json(cli("keys", "list", "--org", "life", "--json"))  # flags after the subcommand work too
    assert sorted(c["name"] for c in as_json) == ["backup", "main"]
    for out in (listed.stdout, json.dumps(as_json)):
        assert key not in out and second not in out

    got = ok_json(cli("--json", "keys", "get", cid))
    assert got["credential_id"] == cid and got["secret_ref"]["path"] == f"{cli.kv_prefix}/life/{cid}"
    updated = ok_json(cli("--json", "keys", "update", cid, "--default-model", "gpt-4o", "--primary", "yes"))
    assert updated["default_model"] == "gpt-4o" and updated["primary"] is True

    now = ok_json(cli("--json", "keys", "rotate", cid, "--expected-version", "1", stdin=rotated))
    assert now["secret_ref"]["version"] == "2" and now["key_hint"] == "sk-…" + rotated[-4:]
    stale = cli("keys", "rotate", cid, "--expected-version", "1", stdin=fake_openai_key())
    assert stale.returncode == 7 and "stale" in stale.stderr

    assert table(ok(cli("keys", "deactivate", cid)))[0]["active"] == "no"
    inactive = ok_json(cli("keys", "list", "--org", "life", "--active", "no", "--json"))
    assert [c["credential_id"] for c in inactive] == [cid]
    assert ok_json(cli("--json", "keys", "activate", cid))["active"] is True

    verified = ok(cli("keys", "verify", cid))
    assert verified.strip() == f"{cid}: active (HTTP 200)"
    assert ok(cli("keys", "delete", cid)).strip() == f"deleted {cid}"
    gone = cli("keys", "get", cid)
    assert gone.returncode == 3 and "NOT_FOUND" in gone.stderr


def test_import_registers_what_ops_wrote_to_vault(cli: Cli, bao: BaoDevServer) -> None:
    key = fake_openai_key()
    path = f"{cli.kv_prefix}/imports/imp-openai"
    bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=key)
    imported = ok_json(cli("--json", "keys", "import", "--org", "imp", "--provider", "openai", "--name", "imported",
                           "--vault-path", path))
    assert imported["secret_ref"]["path"] == path and imported["key_hint"] == "sk-…" + key[-4:]
    missing = cli("keys", "import", "--org", "imp", "--provider", "openai", "--name", "nothing",
                  "--vault-path", f"{cli.kv_prefix}/imports/absent")
    assert missing.returncode == 3 and "no secret at" in missing.stderr


def test_bindings_orgs_audit_providers_rewrap_and_chat(cli: Cli) -> None:
    key = fake_openai_key()
    cid = ok_json(cli("--json", "keys", "add", "--org", "ops", "--provider", "openai", "--name", "main",
                      stdin=key))["credential_id"]
    assert ok(cli("bindings", "add", ADMIN, "--org", "ops")).strip() == f"bound {ADMIN} to ops"

    # Independent reads, run side by side (each byokctl is a process start).
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = {name: pool.submit(cli, *args) for name, args in {
            "bindings table": ("bindings", "list", "--org", "ops"),
            "bindings json": ("--json", "bindings", "list", "--identity", ADMIN),
            "chat stream": ("chat", "--org", "ops", "--model", "gpt-4o-mini", "Say", "hello"),
            "chat unary": ("--json", "chat", "--org", "ops", "--model", "gpt-4o-mini", "hi"),
            "policy": ("orgs", "policy", "--org", "ops"),
            "providers json": ("--json", "providers"),
            "providers table": ("providers",),
            "rewrap": ("rewrap",),
        }.items()}
        out = {name: future.result() for name, future in runs.items()}
    assert table(ok(out["bindings table"])) == [{"caller": ADMIN, "org": "ops", "project": "(all)"}]
    assert [b["caller_identity"] for b in ok_json(out["bindings json"])] == [ADMIN]
    assert ok(out["chat stream"]).strip() and f"[openai, tenant key {cid}]" in out["chat stream"].stderr
    assert ok_json(out["chat unary"])["choices"][0]["text"]
    assert ok(out["policy"]).strip() == "ops: platform fallback off"
    assert {"openai", "anthropic", "gemini"} <= {p["name"] for p in ok_json(out["providers json"])}
    assert "openai" in {row["name"] for row in table(ok(out["providers table"]))}
    plain_mode = out["rewrap"]  # this keyservice runs in plain KV mode: a precondition failure, exit 7
    assert plain_mode.returncode == 7 and "envelope mode" in plain_mode.stderr

    policy = ok_json(cli("--json", "orgs", "policy", "--org", "ops", "--platform-fallback", "on"))
    assert policy == {"org_id": "ops", "allow_platform_fallback": True}
    assert ok_json(cli("--json", "orgs", "revoke", "--org", "ops")) == {"deactivated_count": 1}
    assert ok(cli("bindings", "remove", ADMIN, "--org", "ops")).strip() == f"unbound {ADMIN} from ops"

    with ThreadPoolExecutor(max_workers=3) as pool:
        events_run = pool.submit(cli, "--json", "audit", "--org", "ops", "--since", "1h", "--limit", "50")
        creates_run = pool.submit(cli, "audit", "--credential", cid, "--action", "credential.create",
                                  "--actor", ADMIN)
        bad_since = pool.submit(cli, "audit", "--since", "yesterday").result()
        events, creates = ok_json(events_run.result()), table(ok(creates_run.result()))
    actions = [e["action"] for e in events]
    assert {"credential.create", "binding.create", "binding.delete", "lease.issue", "org.revoke"} <= set(actions)
    assert all(e["org_id"] == "ops" for e in events) and key not in json.dumps(events)
    assert [(row["action"], row["actor"], row["credential"]) for row in creates] == [
        ("credential.create", ADMIN, cid)]
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr


def test_exit_codes_scripts_rely_on(cli: Cli) -> None:
    name_taken = fake_openai_key()
    ok(cli("keys", "add", "--org", "codes", "--provider", "openai", "--name", "taken", stdin=name_taken))
    closed = f"127.0.0.1:{free_port()}"
    cases: dict[str, tuple[int, str, tuple[str, ...], dict[str, str], str | None]] = {
        "usage: no certificates": (2, "missing --cert, --key, --ca (or BYOK_CLIENT_CERT, BYOK_CLIENT_KEY, BYOK_CA); "
                                      "for the local stack, `source .byok/env` in the repository first",
                                   ("keys", "list"), {"BYOK_CLIENT_CERT": "", "BYOK_CLIENT_KEY": "",
                                                      "BYOK_CA": ""}, None),
        "usage: unreadable certificate": (2, "cannot read certificate file: /nonexistent/admin.crt: No such file",
                                          ("keys", "list"), {"BYOK_CLIENT_CERT": "/nonexistent/admin.crt"}, None),
        "usage: bad arguments": (2, "the following arguments are required: --org", ("orgs", "revoke"), {}, None),
        "usage: empty stdin": (2, "no key given on stdin",
                               ("keys", "add", "--org", "codes", "--provider", "openai", "--name", "x"), {}, ""),
        "not found": (3, "NOT_FOUND", ("keys", "get", "cred_0123456789abcdef01234567"), {}, None),
        "permission denied": (4, "PERMISSION_DENIED", ("keys", "list"),
                              {"BYOK_CLIENT_CERT": cli.ids.caller.cert, "BYOK_CLIENT_KEY": cli.ids.caller.key}, None),
        "invalid argument": (5, "INVALID_ARGUMENT", ("keys", "add", "--org", "codes", "--provider", "openai",
                                                     "--name", "bad"), {}, "not-a-provider-key"),
        "unavailable": (6, "UNAVAILABLE", ("--timeout", "3", "keys", "list"), {"BYOK_KEYSERVICE_ADDR": closed},
                        None),
        "conflict": (7, "ALREADY_EXISTS", ("keys", "add", "--org", "codes", "--provider", "openai", "--name",
                                           "taken"), {}, fake_openai_key()),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {what: pool.submit(cli, *args, stdin=stdin, **env)
                for what, (_, _, args, env, stdin) in cases.items()}
        for what, (code, message, *_rest) in cases.items():
            run = runs[what].result()
            assert (run.returncode, message in run.stderr) == (code, True), (what, run.returncode, run.stderr)
            assert "Traceback" not in run.stderr and name_taken not in run.stderr


def test_json_uses_the_tables_words_and_utf8(cli: Cli) -> None:
    """`--json` says what the table says (`unverified`, not CREDENTIAL_HEALTH_UNSPECIFIED) and writes UTF-8 text
    (the hint's `…` as itself, not `\\u2026`), whatever the locale's encoding."""
    key = fake_openai_key()
    cid = ok(cli("keys", "add", "--org", "words", "--provider", "openai", "--name", "main", "-q", stdin=key)).strip()
    row = table(ok(cli("keys", "get", cid)))[0]
    run = subprocess.run([sys.executable, "-m", "byokctl", "--json", "keys", "get", cid], capture_output=True,
                         timeout=120, env=os.environ | cli.env | {"PYTHONIOENCODING": "ascii"})
    assert run.returncode == 0, run.stderr
    assert "…".encode() in run.stdout and b"\\u2026" not in run.stdout
    got = json.loads(run.stdout.decode("utf-8"))
    assert (got["health"], got["key_hint"]) == (row["health"], row["key"]) == ("unverified", "sk-…" + key[-4:])
    listed = ok_json(cli("keys", "list", "--org", "words", "--json"))
    assert [c["health"] for c in listed] == ["unverified"]
    ok(cli("bindings", "add", ADMIN, "--org", "words"))
    chat = ok_json(cli("--json", "chat", "--org", "words", "--model", "gpt-4o-mini", "hi"))
    assert chat["choices"][0]["finish_reason"] == "stop" and chat["key_source"] in ("tenant", "platform")
    created = ok(cli("audit", "--org", "words", "--action", "credential.create"))  # details hold the hint too
    assert f'"key_hint":"sk-…{key[-4:]}"' in created and "\\u2026" not in created
    audit = ok(cli("--json", "audit", "--org", "words", "--action", "credential.create"))
    assert "\\u2026" not in audit and json.loads(json.loads(audit)[0]["details_json"])["key_hint"] == row["key"]


def test_keys_add_and_import_can_print_only_the_id(cli: Cli, bao: BaoDevServer) -> None:
    """`id=$(byokctl keys add … -q)`: stdout is the new id and nothing else, for scripts and the README."""
    added = ok(cli("keys", "add", "--org", "quiet", "--provider", "openai", "--name", "main", "-q",
                   stdin=fake_openai_key()))
    cid = added.removesuffix("\n")
    assert cid.startswith("cred_") and "\n" not in cid and " " not in cid
    assert ok_json(cli("--json", "keys", "get", cid))["name"] == "main"
    path = f"{cli.kv_prefix}/imports/quiet-openai"
    bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=fake_openai_key())
    imported = ok(cli("keys", "import", "--org", "quiet", "--provider", "openai", "--name", "imported",
                      "--vault-path", path, "--id-only")).strip()
    assert imported.startswith("cred_") and imported != cid


def test_a_reader_that_stops_early_gets_no_traceback(cli: Cli) -> None:
    """`byokctl audit | head -3`: when the pipe closes, byokctl stops quietly with 141 (128 + SIGPIPE)."""
    for n in range(3):
        ok(cli("keys", "add", "--org", "piped", "--provider", "openai", "--name", f"k{n}", "-q",
               stdin=fake_openai_key()))
    for args in (("audit", "--org", "piped"), ("--json", "keys", "list", "--org", "piped"), ("--help",)):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before byokctl writes its first line
        try:
            run = subprocess.run([sys.executable, "-m", "byokctl", *args], stdout=write_end,
                                 stderr=subprocess.PIPE, text=True, timeout=120, env=os.environ | cli.env)
        finally:
            os.close(write_end)
        assert run.stderr == "" and run.returncode in (0, 141), (args, run.returncode, run.stderr)
        if args[0] != "--help":  # argparse itself swallows a failed help write and exits 0
            assert run.returncode == 141, args


def test_connection_from_flags_alone(cli: Cli) -> None:
    """No BYOK_* environment at all: everything from flags, before or after the subcommand."""
    files = cli.ids.admin
    run = byokctl("--addr", f"localhost:{cli.keyservice.port}", "--cert", files.cert, "--key", files.key,
                  "providers", "--ca", files.ca, "--json", env={})
    assert "openai" in {p["name"] for p in ok_json(run)}
    # --server-name is the name checked in the server's certificate (which names localhost, not this one).
    renamed = byokctl("--addr", f"127.0.0.1:{cli.keyservice.port}", "--server-name", "keyservice.example",
                      "--timeout", "3", "--cert", files.cert, "--key", files.key, "--ca", files.ca, "providers",
                      env={})
    assert renamed.returncode == 6 and "UNAVAILABLE" in renamed.stderr


def test_every_byokctl_line_in_the_runbook_parses() -> None:
    """docs/operations.md must not drift from the CLI: each `byokctl …` command in its code blocks parses."""
    import shlex

    doc = (REPO / "docs" / "operations.md").read_text()
    blocks = doc.split("```")[1::2]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split(" < ", 1)[0].strip()
            if line.startswith("byokctl "):
                commands.append(shlex.split(line)[1:])
    assert len(commands) >= 12
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/operations.md: `byokctl {' '.join(argv)}` does not parse")


def test_audit_filters_by_project_and_user_and_shows_the_scope(cli: Cli) -> None:
    """Issue 12: the README's `byokctl audit --org` must show a delete, and audit narrows to a project or user."""
    cid = ok(cli("keys", "add", "-q", "--org", "scoped", "--project", "web", "--user", "alice", "--provider",
                 "openai", "--name", "main", stdin=fake_openai_key())).strip()
    ok(cli("keys", "delete", cid))
    rows = table(ok(cli("audit", "--org", "scoped", "--project", "web", "--user", "alice")))
    assert [(r["action"], r["scope"]) for r in rows] == [("credential.delete", "scoped/web/alice"),
                                                         ("credential.create", "scoped/web/alice")]
    assert table(ok(cli("audit", "--org", "scoped", "--user", "bob"))) == []
    events = ok_json(cli("--json", "audit", "--org", "scoped", "--project", "web"))
    assert {(e["project_id"], e["user_id"]) for e in events} == {("web", "alice")}


def test_chat_sends_an_image_and_a_pdf_and_shows_the_reasoning_apart(cli: Cli, tmp_path: Path) -> None:
    key = "sk-ant-api03-" + secrets.token_hex(24)
    ok_json(cli("--json", "keys", "add", "--org", "seeing", "--provider", "anthropic", "--name", "main", stdin=key))
    ok(cli("bindings", "add", ADMIN, "--org", "seeing"))
    png = tmp_path / "chart.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(64))
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + secrets.token_bytes(64))
    before = len(cli.upstream.requests)
    run = cli("chat", "--org", "seeing", "--model", "claude-sonnet-4-5", "--image", str(png), "--document", str(pdf),
              "--reasoning-budget", "2048", "--max-tokens", "4096", "What", "is", "this?")
    answer = ok(run)
    assert answer.strip() and "[reasoning]" not in answer  # stdout is the answer alone
    reasoning = run.stderr.split("[reasoning]\n", 1)[1].split("\n[answer]\n", 1)[0]
    assert reasoning.strip() and reasoning.strip() not in answer
    sent = cli.upstream.requests[before].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    blocks = sent["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["image", "document", "text"]
    assert blocks[0]["source"] == {"type": "base64", "media_type": "image/png",
                                   "data": base64.b64encode(png.read_bytes()).decode()}
    assert blocks[1]["source"]["media_type"] == "application/pdf" and blocks[2]["text"] == "What is this?"
    hidden = cli("chat", "--org", "seeing", "--model", "claude-sonnet-4-5", "--reasoning-budget", "2048",
                 "--max-tokens", "4096", "--hide-reasoning", "hi")
    assert ok(hidden).strip() and "[reasoning]" not in hidden.stderr
    not_an_image = cli("chat", "--org", "seeing", "--model", "claude-sonnet-4-5", "--image", str(pdf), "hi")
    assert not_an_image.returncode != 0 and "is not image" in not_an_image.stderr


def test_embed_prints_one_vector_per_text_in_order_from_arguments_or_stdin(cli: Cli) -> None:
    ok_json(cli("--json", "keys", "add", "--org", "vectors", "--provider", "openai", "--name", "main",
                stdin=fake_openai_key()))
    ok(cli("bindings", "add", ADMIN, "--org", "vectors"))
    run = cli("embed", "--org", "vectors", "--model", "text-embedding-3-small", "--dimensions", "8", "one", "two")
    lines = [json.loads(line) for line in ok(run).splitlines()]
    assert [line["index"] for line in lines] == [0, 1] and all(len(line["values"]) == 8 for line in lines)
    assert lines[0]["values"] != lines[1]["values"] and "[openai text-embedding-3-small" in run.stderr
    piped = ok_json(cli("--json", "embed", "--org", "vectors", "--model", "text-embedding-3-small", "--dimensions",
                        "8", stdin="one\n\ntwo\nthree\n"))  # blank lines are not inputs
    assert len(piped["embeddings"]) == 3 and piped["key_source"] == "tenant"
    assert piped["embeddings"][1]["values"] == pytest.approx(lines[1]["values"])  # same text, same vector
    refused = cli("embed", "--org", "vectors", "--model", "text-embedding-3-small", "--task-type", "clustering", "x")
    assert refused.returncode != 0 and "task_type" in refused.stderr
