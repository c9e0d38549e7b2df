"""The `imagerecognize` command: serve, keys, models, gallery, analyze, evaluate, results,
audit."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from server.settings import Settings, get_settings

DEMO_KEY_NAME = "demo"
DEMO_KEY_FILE = "demo-key.txt"
DEMO_KEY_QUOTA = 100_000
CLOSE_TIMEOUT_S = 2.0


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


def _prepare_model_folder_once(settings: Settings, log_config: dict) -> None:
    """Before several workers start: the models' conversions and compile, once, in a process
    of its own (the workers would otherwise all do them at once, on the same cores)."""
    import logging
    import multiprocessing

    from server.ops.prepare import prepare_model_folder

    # spawn, as uvicorn starts its workers: no torch state forked from this process.
    process = multiprocessing.get_context("spawn").Process(
        target=prepare_model_folder, args=(settings, log_config), name="prepare-models"
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        logging.getLogger(__name__).warning(
            "preparing the model folder failed (exit status %s): each worker prepares its own",
            process.exitcode,
        )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging.config
    import time

    import uvicorn

    from server.ops.announce import ReadyAnnouncer, bind_problem
    from server.pipeline.placement import gpu_requirement_problem
    from server.store.db import open_database
    from server.telemetry import metrics
    from server.telemetry.logs import logging_config

    started = time.monotonic()
    problem = gpu_requirement_problem(settings) or bind_problem(args.host, args.port)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    log_config = logging_config(settings.log_format)
    logging.config.dictConfig(log_config)
    # Before any worker starts: their metrics are summed through this folder.
    made_dir = metrics.prepare_multiprocess(args.workers)
    # Migrate once, before the workers start (each would find the schema current).
    engine = open_database(settings.resolved_database_url)
    engine.dispose()
    if settings.preload and args.workers > 1:
        # What takes long is done once, first. (uvicorn's parent binds the socket but does not
        # listen: the first worker to finish its startup, models loaded and warmed, does.)
        _prepare_model_folder_once(settings, log_config)
    announcer = ReadyAnnouncer(args.host, args.port, settings.preload, started)
    if args.port != 0:  # port 0: uvicorn chooses one, and only its own line names it
        announcer.start()
    try:
        uvicorn.run(
            "server.http.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
            log_config=log_config,
            access_log=False,  # the app logs each request (server/http/observability.py)
            # The app drains first on SIGTERM (server/ops/drain.py); then only the last answers
            # being written are waited for.
            timeout_graceful_shutdown=CLOSE_TIMEOUT_S,
            proxy_headers=True,
            # Bounds on header size and header time, and answers for half-closed sockets.
            http="server.http.protocol:GuardedHttpToolsProtocol",
        )
    finally:
        announcer.stop()
        if made_dir is not None:
            metrics.remove_multiprocess_dir(made_dir)
    return 0


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


def _face_model(settings: Settings):
    """The gallery, and the celebrities model loaded in this process."""
    from server.pipeline.model_manager import load_model
    from server.store.db import open_database
    from server.store.gallery import Gallery

    gallery = Gallery(open_database(settings.resolved_database_url))
    return gallery, load_model(settings, "celebrities", gallery=gallery)


def _enrol(settings: Settings, name: str, paths: list[Path]) -> int:
    from server.store.enrolment import enrol_photos
    from server.store.gallery import GalleryError

    gallery, model = _face_model(settings)
    try:
        photos = [(str(path), path.read_bytes()) for path in paths]
        enrol_photos(gallery, model, name, photos, settings.max_image_pixels)
    except (GalleryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: {len(photos)} face(s) enrolled")
    return 0


def cmd_gallery_add(args: argparse.Namespace, settings: Settings) -> int:
    paths = [Path(p) for p in args.images]
    # Checked before the face model is loaded (seconds), not after.
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    return _enrol(settings, args.name, paths)


def cmd_gallery_import(args: argparse.Namespace, settings: Settings) -> int:
    """One sub-folder per person; each photo enrolled on its own."""
    from server.store.enrolment import folder_photos, import_folder

    root = Path(args.directory)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 1
    work = folder_photos(root)
    if not work:
        print(f"error: no PNG or JPEG photos in sub-folders of {root}", file=sys.stderr)
        return 1
    gallery, model = _face_model(settings)
    report = import_folder(
        gallery, model, work, settings.max_image_pixels,
        on_skip=lambda reason: print(f"skipped {reason}", file=sys.stderr),
    )
    print(
        f"{report.enrolled} photos of {report.people} people enrolled, "
        f"{len(report.skipped)} skipped",
        file=sys.stderr,
    )
    return 1 if report.skipped else 0


def cmd_gallery_list(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.db import open_database
    from server.store.gallery import Gallery

    engine = open_database(settings.resolved_database_url)
    cls = settings.model_class("celebrities")
    descriptor = getattr(cls, "descriptor_name", None)
    people = Gallery(engine).people(descriptor)
    for person in people:
        stale = sum(1 for face in person["faces"] if not face.get("indexed", True))
        note = f"  ({stale} need `gallery reindex`)" if stale else ""
        print(f"{person['name']:<30} {len(person['faces'])} face(s){note}")
    if not people:
        print("the gallery is empty", file=sys.stderr)
    return 0


def cmd_gallery_remove(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.db import open_database
    from server.store.gallery import Gallery, GalleryError

    engine = open_database(settings.resolved_database_url)
    try:
        Gallery(engine).remove_person(args.name)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


def cmd_gallery_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Recomputes every descriptor with the configured model from the kept aligned crops."""
    from server.store.enrolment import reindex

    gallery, model = _face_model(settings)
    count = reindex(gallery, model)
    print(f"{count} face(s) described with {model.descriptor_name}")
    return 0


def _days_arg(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if not days >= 0:  # also NaN
        raise argparse.ArgumentTypeError("days must be >= 0")
    return days


def _limit_arg(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("the limit must be >= 1")
    return number


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
        print(
            f"{entry.as_json()['at']:<20} {entry.actor:<16} {entry.action:<22} "
            f"{entry.subject or '':<24} {details}"
        )
    if not entries:
        print("no audit entries match", file=sys.stderr)
    return 0


def _add_privacy(commands: argparse._SubParsersAction) -> None:
    from server.store.audit import ACTIONS

    results = commands.add_parser("results", help="stored analysis results").add_subparsers(
        dest="results_command", required=True
    )
    purge = results.add_parser(
        "purge", help="delete stored results now, by key and age (audited)"
    )
    purge.add_argument("--key", metavar="NAME", help="only this key's results")
    purge.add_argument(
        "--older-than", type=_days_arg, metavar="DAYS", help="only results older than this"
    )
    purge.add_argument("--all", action="store_true", help="every key's results, of any age")
    purge.set_defaults(func=cmd_results_purge, parser=purge)

    audit = commands.add_parser(
        "audit",
        help="show the audit log: keys, quota, gallery and result deletions, newest first",
    )
    audit.add_argument("--action", choices=ACTIONS, help="only this action")
    audit.add_argument("--actor", help="only this actor: cli, server, or key:NAME")
    audit.add_argument("--subject", help="only this key's, person's or result's entries")
    audit.add_argument("--days", type=_days_arg, metavar="N", help="only the last N days")
    audit.add_argument(
        "--limit", type=_limit_arg, default=50, help="most entries shown (default 50)"
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_audit)


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from server.collection.analyze import job_from, run_analyze

    return run_analyze(
        job_from(args.sources, args.types, args.params, args.out),
        settings,
        engine=args.engine,
        ray_address=args.ray_address,
    )


def _add_analyze(commands: argparse._SubParsersAction) -> None:
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


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
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

    gallery = commands.add_parser("gallery", help="the gallery of known people").add_subparsers(
        dest="gallery_command", required=True
    )
    add = gallery.add_parser("add", help="enrol a person from one or more photos of them")
    add.add_argument("name")
    add.add_argument("images", nargs="+")
    add.set_defaults(func=cmd_gallery_add)
    import_ = gallery.add_parser(
        "import",
        help="enrol every person of a folder (one sub-folder per person, named after them)",
    )
    import_.add_argument("directory")
    import_.set_defaults(func=cmd_gallery_import)
    gallery.add_parser("list", help="list people").set_defaults(func=cmd_gallery_list)
    remove = gallery.add_parser("remove", help="remove a person and their descriptors")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_gallery_remove)
    gallery.add_parser("reindex", help="recompute descriptors after a model switch").set_defaults(
        func=cmd_gallery_reindex
    )
    _add_analyze(commands)
    _add_evaluate(commands)
    _add_privacy(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is cmd_analyze:
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
