"""`imagerecognize serve`: the HTTP server."""

from __future__ import annotations

import argparse
import sys

from server.settings import Settings

CLOSE_TIMEOUT_S = 2.0


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


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.set_defaults(func=cmd_serve)
