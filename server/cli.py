"""The `imagerecognize` command: serve, keys, models."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from server.settings import Settings, get_settings

DEMO_KEY_NAME = "demo"
DEMO_KEY_FILE = "demo-key.txt"


def _keys(settings: Settings):
    from server.db import init_db, make_engine
    from server.keys import KeyStore

    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    return KeyStore(engine)


def _quota_arg(value: str) -> int | None:
    if value.lower() in ("none", "unlimited"):
        return None
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("quota must be >= 0")
    return number


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        proxy_headers=True,
    )
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from server.keys import KeyManagementError

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
    from server.keys import KeyManagementError

    try:
        record = _keys(settings).revoke(args.key_or_name)
    except KeyManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {record.name}")
    return 0


def cmd_keys_set_quota(args: argparse.Namespace, settings: Settings) -> int:
    from server.keys import KeyManagementError

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
    key = store.create(DEMO_KEY_NAME, quota=None, is_admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    print(key)
    return 0


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import API_TYPES, all_models, default_model

    serving = {}
    for type_ in API_TYPES:
        try:
            cls = default_model(
                type_, getattr(settings, f"{type_}_model", None), settings.resolved_model_dir
            )
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            cls = None
        serving[type_] = cls
    print(f"{'type':<14} {'model':<28} {'source':<9} {'weights':<8} serves  weight files")
    for cls in all_models():
        print(
            f"{cls.type:<14} {cls.name:<28} {cls.source.value:<9} "
            f"{'present' if cls.weights_present(settings.resolved_model_dir) else 'missing':<8} "
            f"{'yes' if serving.get(cls.type) is cls else 'no':<7} {cls.weights}"
        )
    for type_ in API_TYPES:
        if serving[type_] is None:
            print(f"{type_:<14} (none: answers 503)")
    from models.fetch import load_manifest

    print("\nfetchable weights (`imagerecognize models fetch NAME`):")
    for entry in load_manifest().values():
        present = (settings.resolved_model_dir / entry.filename).is_file()
        print(f"  {entry.name:<28} {'present' if present else 'missing':<8} {entry.description}")
    return 0


def cmd_models_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from models.fetch import FetchError, fetch, load_manifest

    manifest = load_manifest()
    unknown = [name for name in args.names if name not in manifest]
    if unknown:
        print(
            f"error: unknown weights {', '.join(unknown)}; known: {', '.join(sorted(manifest))}",
            file=sys.stderr,
        )
        return 2
    failed = False
    for name in args.names:
        entry = manifest[name]

        def progress(done: int, total: int | None, name: str = name) -> None:
            share = f" {100 * done // total:3d}%" if total else ""
            print(f"\r{name}: {done / 1e6:8.1f} MB{share}", end="", file=sys.stderr)

        try:
            path = fetch(entry, settings.resolved_model_dir, progress)
        except FetchError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"\n{name}: {path}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagerecognize", description="Self-hosted imagerecognize.com v2 API server."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.set_defaults(func=cmd_serve)

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

    models = commands.add_parser("models", help="inspect models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser(
        "list", help="each model, its weights, and what serves each type"
    ).set_defaults(func=cmd_models_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, get_settings()))


if __name__ == "__main__":
    sys.exit(main())
