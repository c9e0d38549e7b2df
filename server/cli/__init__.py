"""The `imagerecognize` command: serve, keys, models, gallery, analyze, evaluate, results,
audit; one module per command group, each adding its commands with ``add_parser``."""

from __future__ import annotations

import argparse
import sys

from server.cli import analyze, audit, evaluate, gallery, keys, models, results, serve
from server.settings import get_settings

COMMAND_GROUPS = (serve, keys, models, gallery, analyze, evaluate, results, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagerecognize", description="Self-hosted imagerecognize.com v2 API server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is analyze.cmd_analyze:
        # The API's parameter rules; a missing or bad one stops here, before any work.
        from models.types import ANALYSIS_TYPES
        from server.collection.files import UsageError, type_parameters

        values = {
            parameter.name: getattr(args, parameter.name)
            for type_ in ANALYSIS_TYPES.values()
            for parameter in type_.parameters
        }
        try:
            args.params = type_parameters(args.types, values)
        except UsageError as exc:
            args.parser.error(str(exc))
    return int(args.func(args, get_settings()))


if __name__ == "__main__":
    sys.exit(main())
