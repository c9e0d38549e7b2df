"""`imagerecognize keys ...`: API keys and their quota."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from server.settings import Settings

DEMO_KEY_NAME = "demo"
DEMO_KEY_FILE = "demo-key.txt"
DEMO_KEY_QUOTA = 100_000


def _keys(settings: Settings):
    from server.store.db import open_database
    from server.store.keys import KeyStore

    engine = open_database(settings.resolved_database_url)
    return KeyStore(engine)


def _quota_arg(value: str) -> int | None:
    if value.lower() in ("none", "unlimited"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a quota: give a whole number >= 0, or 'unlimited'"
        ) from None
    if number < 0:
        raise argparse.ArgumentTypeError("quota must be >= 0")
    return number


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.keys import KeyManagementError

    try:
        key = _keys(settings).create(args.name, args.quota, is_admin=args.admin)
    except KeyManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    print(f"{'name':<24} {'key':<12} {'quota':>10}  admin  revoked")
    for key in _keys(settings).list():
        quota = "unlimited" if key.quota is None else str(key.quota)
        print(
            f"{key.name:<24} {key.key_prefix + '…':<12} {quota:>10}  "
            f"{'yes' if key.is_admin else 'no':<5}  {'yes' if key.revoked else 'no'}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.keys import KeyManagementError

    try:
        record = _keys(settings).revoke(args.key_or_name)
    except KeyManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {record.name}")
    return 0


def cmd_keys_set_quota(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.keys import KeyManagementError

    try:
        record = _keys(settings).set_quota(args.name, args.quota)
    except KeyManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{record.name}: quota {'unlimited' if record.quota is None else record.quota}")
    return 0


def cmd_keys_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Creates the demo key on first run (kept in the data folder, readable by its owner only)
    and prints it; later runs print the same key."""
    path = Path(settings.data_dir) / DEMO_KEY_FILE
    store = _keys(settings)
    if path.is_file():
        key = path.read_text().strip()
        if store.authenticate(key) is not None:
            print(key)
            return 0
    if store.find(DEMO_KEY_NAME) is not None:
        print(
            f"error: a key named {DEMO_KEY_NAME!r} exists but {path} does not hold it; "
            f"create another with `imagerecognize keys create --name NAME`",
            file=sys.stderr,
        )
        return 1
    # An ordinary key: it may be pasted into pages, so it must not administer the gallery.
    key = store.create(DEMO_KEY_NAME, quota=DEMO_KEY_QUOTA, is_admin=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    print(key)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--quota", type=_quota_arg, default=None, help="analyses allowed (default: unlimited)"
    )
    create.add_argument("--admin", action="store_true", help="may manage the gallery")
    create.set_defaults(func=cmd_keys_create)
    keys.add_parser("list", help="list keys").set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its name or value")
    revoke.add_argument("key_or_name")
    revoke.set_defaults(func=cmd_keys_revoke)
    set_quota = keys.add_parser("set-quota", help="set a key's remaining quota")
    set_quota.add_argument("name")
    set_quota.add_argument("quota", type=_quota_arg, help="a number, or 'unlimited'")
    set_quota.set_defaults(func=cmd_keys_set_quota)
    keys.add_parser("demo", help="create the demo key on first run and print it").set_defaults(
        func=cmd_keys_demo
    )
