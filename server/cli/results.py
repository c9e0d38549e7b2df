"""`imagerecognize results ...`: stored analysis results."""

from __future__ import annotations

import argparse
import sys

from server.cli.arguments import days_arg
from server.settings import Settings


def cmd_results_purge(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.keys import KeyManagementError
    from server.store.results import ResultStore

    if args.key is None and args.older_than is None and not args.all:
        args.parser.error("name what to delete: --key NAME, --older-than DAYS, or --all")
    from server.store.db import open_database

    store = ResultStore(
        open_database(settings.resolved_database_url), settings.result_retention_days
    )
    try:
        removed = store.purge(key_name=args.key, older_than_days=args.older_than)
    except KeyManagementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"deleted {removed} stored result(s)")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    results = commands.add_parser("results", help="stored analysis results").add_subparsers(
        dest="results_command", required=True
    )
    purge = results.add_parser(
        "purge", help="delete stored results now, by key and age (audited)"
    )
    purge.add_argument("--key", metavar="NAME", help="only this key's results")
    purge.add_argument(
        "--older-than", type=days_arg, metavar="DAYS", help="only results older than this"
    )
    purge.add_argument("--all", action="store_true", help="every key's results, of any age")
    purge.set_defaults(func=cmd_results_purge, parser=purge)
