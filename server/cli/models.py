"""`imagerecognize models ...`: the models, their weights, and what serves each type."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from server.settings import Settings


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import API_TYPES, all_models

    serving = {}
    for type_ in API_TYPES:
        try:
            cls = settings.model_class(type_)
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
    _print_placements(settings)
    from models.weights.fetch import load_manifest

    print("\nfetchable weights (`imagerecognize models fetch NAME`):")
    for entry in load_manifest().values():
        present = (settings.resolved_model_dir / entry.filename).is_file()
        print(f"  {entry.name:<28} {'present' if present else 'missing':<8} {entry.description}")
    return 0


def _print_placements(settings: Settings) -> None:
    """Where each served type computes, and whether IMAGERECOGNIZE_REQUIRE_GPU would start."""
    from models.runtimes.device import choose_device
    from server.pipeline.placement import gpu_requirement_problem, served_models

    try:
        device = choose_device(settings.device)
    except RuntimeError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return
    print(f"\nwhere each served type computes (device {device}):")
    for served in served_models(settings, device):
        print(f"  {served.type:<14} {served.model.name:<28} {served.describe()}")
    if settings.require_gpu:
        problem = gpu_requirement_problem(settings)
        print(f"\n{problem}: `serve` would refuse to start" if problem else "\nGPU requirement met")


def cmd_models_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from models.weights.fetch import FetchError, fetch, load_manifest

    manifest = load_manifest(Path(args.manifest)) if args.manifest else load_manifest()
    if args.all == bool(args.names):
        print("error: name the weights to fetch, or pass --all", file=sys.stderr)
        return 2
    if args.all and args.sha256:
        print("error: --sha256 pins one file: name it instead of --all", file=sys.stderr)
        return 2
    unknown = [name for name in args.names if name not in manifest]
    if unknown:
        print(
            f"error: unknown weights {', '.join(unknown)}; known: {', '.join(sorted(manifest))}",
            file=sys.stderr,
        )
        return 2
    if args.all:
        # Only what can be verified: an entry without a digest needs its own --sha256.
        args.names = [name for name, entry in manifest.items() if entry.has_digest()]
        for name in sorted(set(manifest) - set(args.names)):
            print(f"{name}: skipped, no digest known (fetch it with --sha256)", file=sys.stderr)
    failed = False
    for name in args.names:
        entry = manifest[name]
        if args.sha256:
            entry = dataclasses.replace(entry, sha256=args.sha256.lower())
        elif not entry.has_digest():
            print(
                f"error: no checksum is known for {name}: pass --sha256 with the "
                f"publisher's digest",
                file=sys.stderr,
            )
            failed = True
            continue

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


def cmd_models_pack(args: argparse.Namespace, settings: Settings) -> int:
    from models.weights.bundle import BundleError, pack

    try:
        manifest = pack(settings.resolved_model_dir, Path(args.file))
    except (BundleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(entry["size"] for entry in manifest["files"].values())
    print(f"{args.file}: {len(manifest['files'])} files, {size / 1e6:.1f} MB", file=sys.stderr)
    return 0


def cmd_models_unpack(args: argparse.Namespace, settings: Settings) -> int:
    from models.weights.bundle import BundleError, unpack

    try:
        manifest = unpack(Path(args.file), settings.resolved_model_dir)
    except (BundleError, OSError) as exc:
        print(f"error: {exc}; nothing was installed", file=sys.stderr)
        return 1
    print(
        f"{len(manifest['files'])} files verified and installed in "
        f"{settings.resolved_model_dir}",
        file=sys.stderr,
    )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="inspect models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser(
        "list", help="each model, its weights, and what serves each type"
    ).set_defaults(func=cmd_models_list)
    fetch = models.add_parser(
        "fetch", help="download weights from their official URL, checked by sha256"
    )
    fetch.add_argument("names", nargs="*", help="names from `models list`")
    fetch.add_argument(
        "--all", action="store_true", help="every file whose digest the manifest knows"
    )
    fetch.add_argument(
        "--sha256", help="the publisher's digest, for weights whose manifest entry has none"
    )
    fetch.add_argument(
        "--manifest",
        help="another weights manifest of the same format (e.g. URLs of an internal mirror)",
    )
    fetch.set_defaults(func=cmd_models_fetch)
    pack_ = models.add_parser(
        "pack", help="write the model folder and a manifest of its digests to a tar archive"
    )
    pack_.add_argument("file")
    pack_.set_defaults(func=cmd_models_pack)
    unpack_ = models.add_parser(
        "unpack", help="verify an archive of `models pack` whole, then install it"
    )
    unpack_.add_argument("file")
    unpack_.set_defaults(func=cmd_models_unpack)
