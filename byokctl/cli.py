"""byokctl: manage provider keys, caller bindings, org policies, audit, usage, prices, budgets and rate limits in
keyservice; chat through the proxy.

Connection (flags or environment):
  --addr / BYOK_KEYSERVICE_ADDR     keyservice address (default localhost:50051)
  --proxy-addr / BYOK_PROXY_ADDR    proxyservice address for `chat` and `embed` (default localhost:50052)
  --cert / BYOK_CLIENT_CERT, --key / BYOK_CLIENT_KEY, --ca / BYOK_CA   client certificate, key and CA (PEM)
  --server-name / BYOK_SERVER_NAME  name to expect in the server certificate (e.g. via kubectl port-forward)
  These, --timeout and --json are accepted before or after the subcommand.
  (`make run` writes .byok/env with these set for the local stack: `source .byok/env`)

Secrets are never read from argv: `keys add` and `keys rotate` read the key from stdin when it is not a
terminal, else prompt for it without echo; a cloud credential's secret fields come from files or stdin
(`--secret-field secret_access_key=-`, `--secret-field service_account_json=@key.json`), its settings from
`--setting region=us-east-1`.

Exit codes: 0 ok; 1 other error; 2 usage; 3 not found; 4 permission denied or unauthenticated;
5 invalid argument; 6 unavailable (retry later); 7 already exists or conflict (aborted, precondition);
141 whoever read the output stopped early (`byokctl audit | head -3`; nothing is printed, as with Unix tools).

Examples:
  byokctl keys add --org acme --provider openai --name main < key.txt
  id=$(byokctl keys add --org acme --provider openai --name main -q < key.txt)   # only the new id
  byokctl keys list --org acme --json
  echo "$NEW_KEY" | byokctl keys rotate cred_0123456789abcdef01234567
  byokctl keys deactivate cred_0123456789abcdef01234567
  vault kv put secret/byok/imports/acme-openai api_key=- < key.txt
  byokctl keys import --org acme --provider openai --name imported --vault-path byok/imports/acme-openai
  byokctl bindings add spiffe://byok.local/caller/chat-api --org acme
  byokctl audit --org acme --action lease.issue --since 1h
  byokctl rewrap
  byokctl usage --org acme --since 30d --group day --by model
  byokctl budgets set --org acme --key-source platform --period month --limit 50 --soft 80%
  byokctl limits set --org acme --rpm 600 --tpm 200000
  byokctl chat --org acme --model gpt-4o-mini "Say hello"
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import grpc

from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.commands.access import cmd_bindings, cmd_orgs
from byokctl.commands.audit import cmd_audit
from byokctl.commands.chat import EFFORTS, cmd_chat
from byokctl.commands.embed import TASK_TYPES, cmd_embed
from byokctl.commands.keys import cmd_keys
from byokctl.commands.limits import cmd_limits
from byokctl.commands.service import cmd_providers, cmd_rewrap
from byokctl.commands.usage import GROUPINGS, KEY_SOURCES, PERIODS, cmd_budgets, cmd_prices, cmd_usage
from byokctl.connect import open_channel
from byokctl.inputs import UsageError

EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: 3, grpc.StatusCode.PERMISSION_DENIED: 4, grpc.StatusCode.UNAUTHENTICATED: 4,
    grpc.StatusCode.INVALID_ARGUMENT: 5, grpc.StatusCode.UNAVAILABLE: 6, grpc.StatusCode.DEADLINE_EXCEEDED: 6,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 6, grpc.StatusCode.ALREADY_EXISTS: 7, grpc.StatusCode.ABORTED: 7,
    grpc.StatusCode.FAILED_PRECONDITION: 7,
}


# Examples shown by each subcommand's --help (the top-level --help shows the module docstring's).
EXAMPLES = {
    "keys add": ["byokctl keys add --org acme --provider openai --name main < key.txt",
                 'id=$(byokctl keys add --org acme --provider openai --name main -q < key.txt)',
                 "pass show acme/openai | byokctl keys add --org acme --project web --provider openai --name web",
                 "byokctl keys add --org acme --provider bedrock --name aws --setting region=us-east-1 "
                 "--secret-field access_key_id=@key-id.txt --secret-field secret_access_key=- < secret.txt",
                 "byokctl keys add --org acme --provider vertex_ai --name gcp --setting location=us-central1 "
                 "--secret-field service_account_json=@sa-key.json",
                 "byokctl keys add --org acme --provider azure_openai --name az "
                 "--setting endpoint=https://acme.openai.azure.com --setting api_version=2024-10-21 < azure-key.txt"],
    "keys import": ["vault kv put secret/byok/imports/acme-openai api_key=- < key.txt",
                    "byokctl keys import --org acme --provider openai --name imported "
                    "--vault-path byok/imports/acme-openai",
                    "vault kv put secret/byok/imports/acme-aws access_key_id=AKIA… secret_access_key=- < secret.txt",
                    "byokctl keys import --org acme --provider bedrock --name aws --setting region=us-east-1 "
                    "--vault-path byok/imports/acme-aws"],
    "keys list": ["byokctl keys list --org acme", "byokctl keys list --active no --json"],
    "keys get": ["byokctl keys get cred_0123456789abcdef01234567 --json"],
    "keys update": ["byokctl keys update cred_0123456789abcdef01234567 --default-model gpt-4o --primary yes"],
    "keys rotate": ["byokctl keys rotate cred_0123456789abcdef01234567 < new-key.txt",
                    "byokctl keys rotate cred_0123456789abcdef01234567 --expected-version 3 < new-key.txt",
                    "byokctl keys rotate cred_0123456789abcdef01234567 --secret-field access_key_id=@key-id.txt "
                    "--secret-field secret_access_key=- < secret.txt"],
    "keys activate": ["byokctl keys activate cred_0123456789abcdef01234567"],
    "keys deactivate": ["byokctl keys deactivate cred_0123456789abcdef01234567"],
    "keys delete": ["byokctl keys delete cred_0123456789abcdef01234567"],
    "keys verify": ["byokctl keys verify cred_0123456789abcdef01234567"],
    "bindings add": ["byokctl bindings add spiffe://byok.local/caller/chat-api --org acme",
                     "byokctl bindings add spiffe://byok.local/caller/chat-api --org acme --project web"],
    "bindings remove": ["byokctl bindings remove spiffe://byok.local/caller/chat-api --org acme"],
    "bindings list": ["byokctl bindings list --org acme",
                      "byokctl bindings list --identity spiffe://byok.local/caller/chat-api --json"],
    "orgs policy": ["byokctl orgs policy --org acme", "byokctl orgs policy --org acme --platform-fallback off"],
    "orgs revoke": ["byokctl orgs revoke --org acme"],
    "audit": ["byokctl audit --org acme --since 1h",
              "byokctl audit --org acme --project web --user alice",
              "byokctl audit --credential cred_0123456789abcdef01234567 --action credential.rotate --json",
              "byokctl audit --actor spiffe://byok.local/admin --since 2024-05-01T00:00:00+00:00 --limit 500"],
    "providers": ["byokctl providers"],
    "usage": ["byokctl usage --org acme --since 30d --group day",
              "byokctl usage --org acme --key-source platform --since 2025-06-01 --until 2025-07-01 --by project,model",
              "byokctl usage --credential cred_0123456789abcdef01234567 --group hour --since 24h --csv > usage.csv",
              "byokctl usage --by org,key_source --group total --json"],
    "prices list": ["byokctl prices list", "byokctl prices list --provider anthropic --json"],
    "prices set": ["byokctl prices set --provider openai --model gpt-4o-mini --input 0.15 --cached-input 0.075 "
                   "--output 0.60",
                   "byokctl prices set --provider anthropic --model claude-sonnet-4 --input 3 --cached-input 0.30 "
                   "--cache-write 3.75 --output 15 --effective 2025-07-01T00:00:00Z"],
    "prices reprice": ["byokctl prices reprice --provider anthropic --model claude-sonnet-4 "
                       "--since 2025-07-01T00:00:00Z",
                       "byokctl prices reprice --provider openai --since 7d --json"],
    "budgets set": ["byokctl budgets set --org acme --key-source platform --period month --limit 50 --soft 80%",
                    "byokctl budgets set --org acme --project web --period day --limit 5"],
    "budgets list": ["byokctl budgets list --org acme", "byokctl budgets list --json"],
    "budgets delete": ["byokctl budgets delete bud_0123456789abcdef01234567"],
    "limits set": ["byokctl limits set --org acme --rpm 600 --tpm 200000",
                   "byokctl limits set --org acme --project web --user alice --rpm 30"],
    "limits list": ["byokctl limits list --org acme", "byokctl limits list --json"],
    "limits delete": ["byokctl limits delete rl_0123456789abcdef01234567"],
    "rewrap": ["byokctl rewrap", "byokctl rewrap --org acme --json"],
    "chat": ['byokctl chat --org acme --model gpt-4o-mini "Say hello"',
             'byokctl chat --org acme --model claude-sonnet-4-5 --image chart.png --reasoning-budget 2048 '
             '"What does this chart show?"',
             'byokctl --proxy-addr proxy:50052 chat --org acme --provider anthropic --model claude-3-5-haiku "Hi"'],
    "embed": ['byokctl embed --org acme --model text-embedding-3-small "first text" "second text"',
              "byokctl embed --org acme --model gemini-embedding-001 --task-type retrieval_document < lines.txt"],
}


def _add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Connection and output options. The top-level parser holds the real defaults (flag, else environment);
    subcommands accept the same flags after their name (`byokctl keys list --json`) with SUPPRESS defaults so
    that, when absent there, they do not overwrite what was given before the subcommand."""
    env = os.environ

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--addr", default=default(env.get("BYOK_KEYSERVICE_ADDR", "localhost:50051")),
                        help="keyservice host:port (BYOK_KEYSERVICE_ADDR)")
    parser.add_argument("--proxy-addr", default=default(env.get("BYOK_PROXY_ADDR", "localhost:50052")),
                        help="proxyservice host:port, for chat (BYOK_PROXY_ADDR)")
    parser.add_argument("--cert", default=default(env.get("BYOK_CLIENT_CERT", "")),
                        help="client certificate PEM (BYOK_CLIENT_CERT)")
    parser.add_argument("--key", default=default(env.get("BYOK_CLIENT_KEY", "")),
                        help="client private key PEM (BYOK_CLIENT_KEY)")
    parser.add_argument("--ca", default=default(env.get("BYOK_CA", "")),
                        help="CA bundle the server's certificate must chain to (BYOK_CA)")
    parser.add_argument("--server-name", default=default(env.get("BYOK_SERVER_NAME", "")),
                        help="expected name in the server's certificate when it differs from the address, "
                             "e.g. through kubectl port-forward (BYOK_SERVER_NAME)")
    parser.add_argument("--timeout", type=float, default=default(30.0), help="RPC deadline in seconds")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print JSON (protobuf field names, the tables' words for enums, UTF-8) instead of "
                             "tables")


def _cloud_options(p: argparse.ArgumentParser, *, secrets: bool, settings: bool = True) -> None:
    """A cloud credential's settings and secret fields (`byokctl providers` lists each provider's)."""
    if settings:
        p.add_argument("--setting", action="append", metavar="NAME=VALUE",
                       help="a setting of a cloud credential (region, endpoint, location, …); repeatable")
    if secrets:
        p.add_argument("--secret-field", action="append", metavar="NAME=@FILE|NAME=-",
                       help="a secret field of a cloud credential, from a file (@FILE) or stdin (-, one field); "
                            "never a value on the command line; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byokctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def leaf(group: Any, name: str, helptext: str, path: str = "") -> argparse.ArgumentParser:
        examples = EXAMPLES.get(path or name, [])
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
        return group.add_parser(name, help=helptext, description=helptext, epilog=epilog, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    def scoped(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--org", required=required)
        p.add_argument("--project")
        p.add_argument("--user")
        return p

    keys = sub.add_parser("keys", help="provider credentials").add_subparsers(dest="action", required=True)
    for name, helptext in (("add", "store a new key (read from stdin or a prompt, never from argv)"),
                           ("import", "register a key ops wrote to Vault (the key never crosses the API)")):
        p = scoped(leaf(keys, name, helptext, f"keys {name}"))
        p.add_argument("--provider", required=True)
        p.add_argument("--name", required=True)
        p.add_argument("--api-base")
        p.add_argument("--default-model")
        p.add_argument("--primary", action="store_true")
        p.add_argument("-q", "--id-only", action="store_true",
                       help="print only the new credential's id (for scripts: id=$(byokctl keys add … -q))")
        _cloud_options(p, secrets=name == "add")
        if name == "import":
            p.add_argument("--vault-path", required=True, help="path inside the KV mount, e.g. byok/imports/x")
    p = scoped(leaf(keys, "list", "list credentials (all pages)", "keys list"), required=False)
    p.add_argument("--provider")
    p.add_argument("--active", choices=["yes", "no"])
    for name, helptext in (("get", "show one credential"),
                           ("activate", "serve leases from a credential again"),
                           ("deactivate", "stop issuing leases now; proxies drop cached ones within a second"),
                           ("delete", "delete the credential and its Vault secret (all versions)"),
                           ("verify", "call the provider with the key and record its health")):
        leaf(keys, name, helptext, f"keys {name}").add_argument("id", help="credential id (cred_…)")
    p = leaf(keys, "update", "change name, api base, default model or primary flag", "keys update")
    p.add_argument("id", help="credential id (cred_…)")
    p.add_argument("--name")
    p.add_argument("--api-base")
    p.add_argument("--default-model")
    p.add_argument("--primary", choices=["yes", "no"])
    p = leaf(keys, "rotate", "replace the secret (new key from stdin or a prompt); revokes cached leases",
             "keys rotate")
    p.add_argument("id", help="credential id (cred_…)")
    p.add_argument("--expected-version", type=int, help="fail unless the current secret version is this")
    _cloud_options(p, secrets=True, settings=False)

    bindings = sub.add_parser("bindings", help="which caller identities may act for which orgs/projects")
    bsub = bindings.add_subparsers(dest="action", required=True)
    for name, helptext in (("add", "allow a caller identity to use an org's (or project's) keys"),
                           ("remove", "withdraw it; proxies drop that caller's cached leases")):
        p = leaf(bsub, name, helptext, f"bindings {name}")
        p.add_argument("identity", help="caller's certificate identity (SPIFFE URI or CN)")
        p.add_argument("--org", required=True)
        p.add_argument("--project")
    p = leaf(bsub, "list", "list bindings, optionally of one identity or org", "bindings list")
    p.add_argument("--identity")
    p.add_argument("--org")

    orgs = sub.add_parser("orgs", help="org policy and emergency revocation").add_subparsers(dest="action",
                                                                                              required=True)
    p = leaf(orgs, "policy", "show or set an org's policy", "orgs policy")
    p.add_argument("--org", required=True)
    p.add_argument("--platform-fallback", choices=["on", "off"])
    leaf(orgs, "revoke", "emergency: deactivate every credential of an org", "orgs revoke").add_argument(
        "--org", required=True)

    p = leaf(sub, "audit", "list audit events, newest first")
    p.add_argument("--org")
    p.add_argument("--project", help="only events on this project (of --org)")
    p.add_argument("--user", help="only events on this user (of --org)")
    p.add_argument("--credential", help="credential id")
    p.add_argument("--action", help="e.g. credential.create, credential.rotate, lease.issue, org.revoke")
    p.add_argument("--actor", help="mTLS identity of whoever acted")
    p.add_argument("--since", help="15m, 2h, 7d or an ISO 8601 time")
    p.add_argument("--limit", type=int, default=100)

    p = scoped(leaf(sub, "usage", "tokens, requests and spend, by hour, day or in total (keyservice's rollups)"),
               required=False)
    p.add_argument("--credential", help="credential id")
    p.add_argument("--provider")
    p.add_argument("--model", help="as the provider answered")
    p.add_argument("--key-source", choices=sorted(KEY_SOURCES))
    p.add_argument("--since", help="15m, 2h, 7d or an ISO 8601 time (UTC without an offset); default: all")
    p.add_argument("--until", help="as --since; default: now")
    p.add_argument("--group", choices=list(GROUPINGS), default="day", help="rows per hour, per day, or one total")
    p.add_argument("--by", metavar="DIMS", help="also break rows down by org, project, user, credential, provider, "
                                                "model, key_source (comma-separated)")
    p.add_argument("--csv", action="store_true", help="print CSV (spend in dollars) instead of a table")

    prices = sub.add_parser("prices", help="the price table spend is computed with").add_subparsers(
        dest="action", required=True)
    p = leaf(prices, "list", "the shipped prices, ops' file and overrides, per million tokens", "prices list")
    p.add_argument("--provider")
    p.add_argument("--model")
    p = leaf(prices, "set", "override a model's prices (dollars per million tokens) from a time on", "prices set")
    p.add_argument("--provider", required=True)
    p.add_argument("--model", required=True, help="also prices answered models it is a prefix of")
    p.add_argument("--input", required=True, metavar="USD")
    p.add_argument("--output", required=True, metavar="USD")
    p.add_argument("--cached-input", metavar="USD", help="prompt cache reads (default: as input)")
    p.add_argument("--cache-write", metavar="USD", help="prompt cache writes (default: as input)")
    p.add_argument("--reasoning", metavar="USD", help="reasoning tokens (default: as output)")
    p.add_argument("--effective", help="ISO 8601 time or now (default); usage before it keeps its price")
    p = leaf(prices, "reprice", "price a provider's counted usage again with today's table (after a price set "
             "with a past effective time); budgets see the new spend", "prices reprice")
    p.add_argument("--provider", required=True)
    p.add_argument("--model", help="only this model and the answered models it is a prefix of (default: all)")
    p.add_argument("--since", required=True, help="ISO 8601 time or 30d, 24h…; rounded up to a whole hour")

    budgets = sub.add_parser("budgets", help="spend caps per org, project or user").add_subparsers(
        dest="action", required=True)
    p = scoped(leaf(budgets, "set", "cap a scope's spend per day or month; past the limit its leases are refused",
                    "budgets set"))
    p.add_argument("--key-source", choices=sorted(KEY_SOURCES), help="only spend on these keys (default: all)")
    p.add_argument("--period", choices=list(PERIODS), required=True, help="UTC calendar day or month")
    p.add_argument("--limit", required=True, metavar="USD")
    p.add_argument("--soft", metavar="USD|PCT%", help="warning threshold (audit event, metric), e.g. 40 or 80%%")
    leaf(budgets, "list", "budgets with their spend this period", "budgets list").add_argument("--org")
    leaf(budgets, "delete", "remove a budget", "budgets delete").add_argument("id", help="budget id (bud_…)")

    limits = sub.add_parser("limits", help="rate limits per org, project or user (per minute, every proxy)"
                            ).add_subparsers(dest="action", required=True)
    p = scoped(leaf(limits, "set", "cap a scope's requests and/or tokens per minute; past it the proxies refuse "
                    "with RESOURCE_EXHAUSTED", "limits set"))
    p.add_argument("--rpm", type=int, metavar="N", help="requests per minute")
    p.add_argument("--tpm", type=int, metavar="N", help="tokens (input + output) per minute")
    leaf(limits, "list", "rate limits with this minute's counts", "limits list").add_argument("--org")
    leaf(limits, "delete", "remove a rate limit", "limits delete").add_argument("id", help="rate limit id (rl_…)")

    leaf(sub, "providers", "list supported providers")
    p = leaf(sub, "rewrap", "rewrap envelope-mode secrets to the latest transit key version (no plaintext read)")
    p.add_argument("--org")

    p = scoped(leaf(sub, "chat", "stream a completion through the proxy (uses --proxy-addr)"))
    p.add_argument("--model", required=True)
    p.add_argument("--provider")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--image", action="append", default=[], metavar="FILE_OR_URL",
                   help="attach an image (a file, or an https URL the provider fetches); repeatable")
    p.add_argument("--document", action="append", default=[], metavar="FILE_OR_URL",
                   help="attach a PDF (a file or an https URL); repeatable")
    p.add_argument("--reasoning-effort", choices=EFFORTS, help="how hard a reasoning model thinks")
    p.add_argument("--reasoning-budget", type=int, metavar="TOKENS", help="thinking token budget")
    p.add_argument("--hide-reasoning", action="store_true", help="do not print the model's reasoning (stderr)")
    p.add_argument("prompt", nargs="+")

    p = scoped(leaf(sub, "embed", "embed texts through the proxy (uses --proxy-addr)"))
    p.add_argument("--model", required=True)
    p.add_argument("--provider")
    p.add_argument("--dimensions", type=int)
    p.add_argument("--task-type", choices=sorted(TASK_TYPES))
    p.add_argument("text", nargs="*", help="texts to embed (else one per line on stdin)")
    return parser


COMMANDS = {"keys": cmd_keys, "bindings": cmd_bindings, "orgs": cmd_orgs, "audit": cmd_audit,
            "providers": cmd_providers, "rewrap": cmd_rewrap, "usage": cmd_usage, "prices": cmd_prices,
            "budgets": cmd_budgets, "limits": cmd_limits}


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader went away (`byokctl audit | head -3`): stop quietly, as Unix tools do. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again, and exit as if killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]  # JSON is UTF-8 whatever the locale
    try:
        if args.command == "chat":
            cmd_chat(args)
            return 0
        if args.command == "embed":
            cmd_embed(args)
            return 0
        with open_channel(args.addr, args) as channel:
            COMMANDS[args.command](args, kpb_grpc.KeyServiceStub(channel))
        return 0
    except UsageError as exc:
        print(f"byokctl: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        code = exc.code()
        print(f"byokctl: {code.name}: {exc.details()}", file=sys.stderr)
        return EXIT_CODES.get(code, 1)
    except KeyboardInterrupt:
        return 130
