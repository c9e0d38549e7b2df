"""`imagerecognize audit`: the audit log."""

from __future__ import annotations

import argparse
import sys

from server.cli.arguments import days_arg, limit_arg
from server.cli.output import printable
from server.settings import Settings


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from datetime import timedelta

    from server.store.audit import AuditLog
    from server.store.db import utcnow

    since = None if args.days is None else utcnow() - timedelta(days=args.days)
    from server.store.db import open_database

    entries = AuditLog(open_database(settings.resolved_database_url)).entries(
        action=args.action, actor=args.actor, subject=args.subject, since=since, limit=args.limit
    )
    if args.json:
        for entry in entries:
            print(json.dumps(entry.as_json(), sort_keys=True))
        return 0
    print(f"{'when (UTC)':<20} {'who':<16} {'what':<22} {'subject':<24} details")
    for entry in entries:
        details = json.dumps(entry.details, sort_keys=True) if entry.details else ""
        # Subjects and details hold names that API clients chose: shown, not obeyed.
        print(
            f"{entry.as_json()['at']:<20} {printable(entry.actor):<16} {entry.action:<22} "
            f"{printable(entry.subject or ''):<24} {printable(details)}"
        )
    if not entries:
        print("no audit entries match", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    from server.store.audit import ACTIONS

    audit = commands.add_parser(
        "audit",
        help="show the audit log: keys, quota, gallery and result deletions, newest first",
    )
    audit.add_argument("--action", choices=ACTIONS, help="only this action")
    audit.add_argument("--actor", help="only this actor: cli, server, or key:NAME")
    audit.add_argument("--subject", help="only this key's, person's or result's entries")
    audit.add_argument("--days", type=days_arg, metavar="N", help="only the last N days")
    audit.add_argument(
        "--limit", type=limit_arg, default=50, help="most entries shown (default 50)"
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_audit)
