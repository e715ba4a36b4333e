"""The command line (docs/operations.md): serve, migrate, check-config, token, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib import metadata

from bridge.config import ENVIRONMENT, Config, ConfigError, default_config_path, load_config
from bridge.errors import StartupFailed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pachca-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help)
        cmd.add_argument(
            "--config",
            default=None,
            help=f"config file (default: $BRIDGE_CONFIG, else {default_config_path()})",
        )
        return cmd

    command("serve", "run the service (migrates the database first)")
    command("migrate", "bring the database schema up to date")
    command("check-config", "validate the config file; non-zero exit on any problem")
    command("recover-webhooks", "process webhook events missed while down (Pachca's history)")
    token = command("token", "print a signed web-client token for a known user")
    token.add_argument("user_id")
    token.add_argument(
        "--ttl",
        type=int,
        default=None,
        help="lifetime in seconds, at most auth.max_token_ttl_s (default: an hour, or that cap)",
    )
    demo = command("demo", "the service with a Pachca sandbox on this machine, to try it out")
    demo.add_argument(
        "--port",
        type=_port,
        default=None,
        help="the service's port (default: server.port); the sandbox takes the next free one",
    )
    return parser


def _version() -> str:
    try:
        return metadata.version("pachca-bridge")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        if exc.source == ENVIRONMENT:
            # One line per variable: its name and what it expects.
            for name, message in exc.problems:
                print(f"environment variable {name}: {message}", file=sys.stderr)
            return 1
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for path, message in exc.problems:
            print(f"  {path}: {message}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(f"{args.config or default_config_path()}: ok")
        return 0
    if args.command == "migrate":
        return asyncio.run(_migrate(config))
    if args.command == "recover-webhooks":
        from bridge.pachca.recovery import recover_from_config

        return asyncio.run(recover_from_config(config))
    if args.command == "token":
        return asyncio.run(_token(config, args.user_id, args.ttl))
    if args.command == "demo":
        # The sandbox sits above the service, like the HTTP edge: imported at the top only.
        from sandbox import demo

        return demo.main(config, args.port)
    return _serve(config, args.config)


async def _migrate(config: Config) -> int:
    from store import migrate
    from store.db import Database, safe_url

    db = Database(config.database.url)
    try:
        await migrate.upgrade(db)
        print(f"{safe_url(db.url)}: schema at {await migrate.current_revision(db)}")
    finally:
        await db.dispose()
    return 0


DEFAULT_TOKEN_TTL_S = 3600


async def _token(config: Config, user_id: str, ttl: int | None) -> int:
    from bridge.auth import Tokens, load_generated_secret
    from bridge.config import LiveConfig
    from store import migrate
    from store import users as user_store

    cap = config.auth.max_token_ttl_s
    if ttl is None:
        ttl = min(DEFAULT_TOKEN_TTL_S, cap)
    if ttl <= 0:
        print("--ttl must be positive", file=sys.stderr)
        return 2
    if ttl > cap:
        # Such a token would be refused everywhere: say so rather than print it.
        print(
            f"--ttl {ttl} is over auth.max_token_ttl_s ({cap} seconds); "
            "tokens living longer are refused",
            file=sys.stderr,
        )
        return 2
    try:
        db = await migrate.open_current(config.database.url)
    except migrate.SchemaNotReady as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        async with db.read() as conn:
            known = await user_store.get_user(conn, user_id) is not None
        if not known:
            print(f"unknown user: {user_id}", file=sys.stderr)
            return 1
        tokens = Tokens(LiveConfig(config), await load_generated_secret(db))
        print(tokens.issue(user_id, ttl))
    finally:
        await db.dispose()
    return 0


def _serve(config: Config, config_path: str | None) -> int:
    # The HTTP edge sits above this package; it is imported here, at the top of the stack.
    from bridge.ops import logs
    from handlers.server import serve

    logs.configure(config.logging.format, config.logging.level)
    try:
        serve(config, config_path or default_config_path())
    except StartupFailed as exc:
        print(f"pachca-bridge: {exc}", file=sys.stderr)
        return 1
    return 0
