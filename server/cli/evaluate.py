"""`imagerecognize evaluate`: a type measured on the operator's own labelled images."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.settings import Settings


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from server.collection.evaluate import EvaluateRequest, run_evaluate

    request = EvaluateRequest(
        Path(args.folder),
        args.type,
        Path(args.out),
        args.target,
        Path(args.annotations) if args.annotations else None,
        Path(args.results) if args.results else None,
    )
    return run_evaluate(request, settings)


def add_parser(commands: argparse._SubParsersAction) -> None:
    from models.types import API_TYPES

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a type on your own labelled images and choose its threshold",
        description="Analyses the images of LABELLED_FOLDER (one sub-folder per label; see "
        "docs/evaluate.md for each type's layout), sweeps the threshold and writes "
        "REPORT_DIR/report.json and REPORT_DIR/index.html. Analyses are kept in a resumable "
        "results file: a second run analyses nothing again.",
    )
    evaluate.add_argument("folder", metavar="LABELLED_FOLDER")
    evaluate.add_argument(
        "--type", required=True, choices=API_TYPES, metavar="TYPE", help=", ".join(API_TYPES)
    )
    evaluate.add_argument("--out", required=True, metavar="REPORT_DIR")
    evaluate.add_argument(
        "--target",
        metavar="precision=P|recall=R",
        help="the recommended threshold: best recall with precision >= P, or best precision "
        "with recall >= R (default: best F1)",
    )
    evaluate.add_argument(
        "--annotations",
        metavar="instances.json",
        help="COCO annotations of the images (objects, detect_faces): labels and boxes, AP@0.5",
    )
    evaluate.add_argument(
        "--results",
        metavar="RESULTS.jsonl",
        help="the analysis results file (default: REPORT_DIR/analysis/TYPE-MODEL.jsonl)",
    )
    evaluate.set_defaults(func=cmd_evaluate)
