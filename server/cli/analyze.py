"""`imagerecognize analyze`: files and folders analysed offline into a JSON Lines file."""

from __future__ import annotations

import argparse

from server.settings import Settings


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from server.collection.analyze import job_from, run_analyze

    return run_analyze(
        job_from(args.sources, args.types, args.params, args.out),
        settings,
        engine=args.engine,
        ray_address=args.ray_address,
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    from models.types import ANALYSIS_TYPES, API_TYPES

    analyze = commands.add_parser(
        "analyze",
        help="analyse files and folders offline into a JSON Lines file (resumable)",
        description="Analyses every file under SOURCE (folders recursively) with each TYPE "
        "and appends one JSON line per (file, type) to RESULTS.jsonl; running it again adds "
        "only the lines still missing.",
    )
    analyze.add_argument("sources", nargs="+", metavar="SOURCE")
    analyze.add_argument(
        "--type",
        dest="types",
        action="append",
        required=True,
        choices=API_TYPES,
        metavar="TYPE",
        help=f"one of {', '.join(API_TYPES)}; repeat for several",
    )
    analyze.add_argument("--out", required=True, metavar="RESULTS.jsonl")
    for type_ in ANALYSIS_TYPES.values():
        for parameter in type_.parameters:
            analyze.add_argument(
                parameter.flag,
                type=int,
                metavar="N",
                help=f"{type_.name}: {parameter.help}, "
                f"{parameter.minimum}-{parameter.maximum or 'any'}"
                + (" (required)" if parameter.required else ""),
            )
    analyze.add_argument("--engine", choices=("local", "ray"), default="local")
    analyze.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (default: start a local Ray instance)",
    )
    analyze.set_defaults(func=cmd_analyze, parser=analyze)
