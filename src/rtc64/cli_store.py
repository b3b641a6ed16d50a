"""``rtc64 user add | list | remove`` and ``rtc64 admin set-password``: the commands that
open the location store (or the data directory) without running the gateway.

Errors in the arguments are ``ConfigError`` naming the flag and the expected form; the
command line turns them into one line on stderr (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable

from rtc64 import config, logs, serve
from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.gateway.location.bindings import canonical_aor
from rtc64.gateway.location.store import Store
from rtc64.gateway.location.users import UserRecord
from rtc64.io import loop
from rtc64.web import auth as web_auth

EXIT_OK, EXIT_FAIL = 0, 1


def store_config(args: argparse.Namespace) -> config.Config:
    overrides: dict[str, object] = {}
    for key in ("store.url", "general.data_dir", "sip.domains"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.log_level is not None:
        overrides["general.log_level"] = args.log_level
    cfg = config.load(args.config, overrides)
    logs.setup(cfg.general.log_level, cfg.general.log_format)
    return cfg


def with_store(
    args: argparse.Namespace, job: Callable[[Store, config.Config], Awaitable[int]]
) -> int:
    cfg = store_config(args)

    async def main() -> int:
        store = await serve.open_checked_store(cfg)
        try:
            return await job(store, cfg)
        finally:
            await store.close()

    return loop.run_once(main)


def admin_set_password(args: argparse.Namespace) -> int:
    cfg = store_config(args)
    if sys.stdin.isatty():
        import getpass  # noqa: PLC0415 - only for an interactive terminal

        password = getpass.getpass("new admin password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("password", "***", "the same password twice")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    record = web_auth.hash_admin(args.user, password)
    path = web_auth.save_admin(cfg.prepare_data_dir(), record)
    print(f"admin {args.user!r} saved in {path} (a running gateway reads it on restart)")
    return EXIT_OK


def user_add(args: argparse.Namespace) -> int:
    name: str = args.name
    if not name or any(c.isspace() or c in ':"@' for c in name):
        raise ConfigError("NAME", name, "a SIP user name without spaces, ':', '\"' or '@'")
    password = args.password
    if password is None:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("--password", "", "a non-empty password (or one line on stdin)")

    aors = [_aor(value) for value in args.aor or ()]

    async def job(store: Store, cfg: config.Config) -> int:
        realm = args.realm or config.realm_of(cfg)
        kept = await store.get_user(name) if args.aor is None else None
        extra = aors if kept is None else kept.aors
        await store.put_user(UserRecord.from_password(name, realm, password, extra))
        also = f", also registers {', '.join(extra)}" if extra else ""
        print(f"user {name} saved (realm {realm}{also})")
        if not (args.realm or cfg.auth.realm or cfg.sip.domains):
            print(
                f"rtc64: note: realm {realm!r} is this host's name (no --realm, auth.realm or "
                "sip.domains): a gateway serving a domain needs the same --config or --domain "
                "here, or its users are unknown to it",
                file=sys.stderr,
            )
        return EXIT_OK

    return with_store(args, job)


def _aor(value: str) -> str:
    """``--aor`` as the canonical AOR the registrar compares with."""
    try:
        aor = canonical_aor(value)
    except RemoteProtocolError:
        aor = ""
    if "@" not in aor:
        raise ConfigError("--aor", value, "a SIP address-of-record like sip:sales@example.net")
    return aor


def user_list(args: argparse.Namespace) -> int:
    async def job(store: Store, cfg: config.Config) -> int:
        realm = config.realm_of(cfg)
        for record in sorted(await store.list_users(), key=lambda r: r.name):
            line = f"{record.name}\trealm={record.realm}"
            if record.aors:
                line += "\taors=" + ",".join(record.aors)
            if record.realm != realm:
                line += f"\t(not this configuration's realm {realm}: unknown to its gateway)"
            print(line)
        return EXIT_OK

    return with_store(args, job)


def user_remove(args: argparse.Namespace) -> int:
    async def job(store: Store, cfg: config.Config) -> int:
        if await store.delete_user(args.name):
            print(f"user {args.name} removed")
            return EXIT_OK
        print(f"rtc64: no user {args.name!r}", file=sys.stderr)
        return EXIT_FAIL

    return with_store(args, job)
