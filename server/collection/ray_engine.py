"""The Ray engine of `imagerecognize analyze` (optional: `pip install '.[ray]'`).

A Ray Data job: the driver lists the files → read bytes and sha256 (CPU tasks, skipping what
the results file already holds) → for each type: decode (CPU tasks) → ``map_batches`` on a
pool of actors that each load the type's model once (GPU actors where the cluster has GPUs)
→ the driver writes the lines to the same results file, under the same resume rule. Ray Data
streams blocks between the stages with backpressure, so memory stays bounded. The tasks and
actors run the pipeline's stages (server/pipeline/stages.py); what each reserves is sized to
the cluster before the job starts (fit_job), so that no part of it waits for ever.

Every node needs this package installed and the files at the same paths (a shared folder);
celebrities needs the gallery's database (the data folder, or IMAGERECOGNIZE_DATABASE_URL).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from server.collection.files import (
    Found,
    Job,
    ResultsFile,
    RunError,
    Tally,
    error_status,
    line_key,
    make_line,
    read_file,
    walk,
)
from server.settings import Settings

FLUSH_LINES = 64
FLUSH_S = 0.5
# Logical CPUs, at most, of a model actor and of a read or decode task. Ray grants them as
# scheduling tokens, not cores: a job must leave, on some node, enough for one task beside
# every actor, or its tasks wait for ever (fit_job).
CPU_ACTOR_CPUS = 0.5
GPU_ACTOR_CPUS = 1.0
TASK_CPUS = 1.0


@dataclass(frozen=True)
class Fit:
    """What each part of a job reserves, sized to the cluster (fit_job)."""

    actors: int  # per type
    actor_cpus: float
    actor_gpus: float
    task_cpus: float

    def describe(self, types: int) -> str:
        gpus = f" and {self.actor_gpus:g} GPU" if self.actor_gpus else ""
        return (
            f"{types} x {self.actors} model actors of {self.actor_cpus:g} CPU{gpus} each, "
            f"read and decode tasks of {self.task_cpus:g} CPU"
        )


def fit_job(nodes: list[dict[str, float]], types: int) -> Fit:
    """Reservations that fit ``nodes`` (the resources of each live node): each type's pool
    has one actor per node (per GPU where there are GPUs, the types sharing it), each small
    enough that one actor of every type and one read or decode task fit on the smallest node.
    Then, wherever Ray places the actors, what they leave would hold one task on every node,
    so some node always has room for one. Raises RunError, saying what the job needs, when no
    node has a CPU."""
    cpu_nodes = [node for node in nodes if node.get("CPU", 0) > 0]
    if not cpu_nodes:
        raise RunError(
            f"the Ray cluster has no CPU: this job needs at least one node with a logical CPU "
            f"(its read and decode tasks and a share for each of its {types} model actors)"
        )
    gpu_nodes = [node for node in cpu_nodes if node.get("GPU", 0) >= 1]
    if gpu_nodes:
        actors = sum(int(node["GPU"]) for node in gpu_nodes)
        # The CPUs beside each GPU; a node of GPUs runs one actor of each type per GPU.
        room = min(node["CPU"] / int(node["GPU"]) for node in gpu_nodes)
        cap, actor_gpus = GPU_ACTOR_CPUS, 1.0 / types
    else:
        actors, room = len(cpu_nodes), min(node["CPU"] for node in cpu_nodes)
        cap, actor_gpus = CPU_ACTOR_CPUS, 0.0
    task_cpus = min(TASK_CPUS, room / 2)
    actor_cpus = min(cap, (room - task_cpus) / types)
    # Ray counts resources in units of 1/10,000.
    return Fit(actors, _round_down(actor_cpus), _round_down(actor_gpus), task_cpus)


def _round_down(amount: float) -> float:
    return int(amount * 10_000) / 10_000


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _with_node(row: dict[str, Any]) -> dict[str, Any]:
    nodes = set(json.loads(row["nodes"]))
    nodes.add(_node())
    row["nodes"] = json.dumps(sorted(nodes))
    return row


def read_row(
    row: dict[str, Any], types: list[str], params: dict[str, dict], done: set[int], max_bytes: int
) -> dict[str, Any]:
    """Reads one file (a CPU task); only the types whose line is missing stay pending."""
    read = read_file(Found(row["path"]), max_bytes)
    pending = [t for t in types if line_key(read.path, read.sha256, t, params[t]) not in done]
    lines = []
    if read.problem is not None:
        status, message = error_status(read.problem)
        lines = [
            make_line(read.path, read.sha256, t, params[t], status, message, None)
            for t in pending
        ]
        pending = []
    return _with_node(
        {
            "path": read.path,
            "sha256": read.sha256 or "",
            "data": read.data or b"",
            "pending": json.dumps(pending),
            "lines": json.dumps(lines),
            "nodes": "[]",
            "rgb": b"",
            "rgb_size": "null",
            "info": "null",
        }
    )


def decode_row(
    row: dict[str, Any], type_: str, params: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """The pipeline's checks and decoding for one type (a CPU task), at the size its model
    reads, so that the answer is the API's for the same bytes. A task decodes its rows one
    after another under one DecodeBudget, so that a node holds the pixels of at most one
    image per decode task it runs (Ray runs at most its logical CPUs / ``task_cpus`` of them)."""
    import dataclasses

    from server.pipeline import stages

    row["rgb"], row["rgb_size"], row["info"] = b"", "null", "null"
    pending = json.loads(row["pending"])
    if type_ not in pending:
        return row
    config = Settings(**settings)
    cls = config.model_class(type_)
    assert cls is not None  # checked by the driver before the job
    data = row["data"]
    try:
        info = stages.inspect(data, config)
        image = stages.decode(cls, data, info, stages.DecodeBudget.of(config))
    except Exception as exc:
        status, message = error_status(exc)
        lines = json.loads(row["lines"])
        lines.append(make_line(row["path"], row["sha256"], type_, params, status, message, None))
        row["lines"] = json.dumps(lines)
        row["pending"] = json.dumps([t for t in pending if t != type_])
        return _with_node(row)
    row["rgb"] = image.rgb.tobytes()
    row["rgb_size"] = json.dumps(list(image.rgb.size))
    row["info"] = json.dumps(dataclasses.asdict(info))
    return _with_node(row)


class ModelActor:
    """One loaded model of one type; analyses the decoded images of a batch in one call."""

    def __init__(self, type_: str, params: dict[str, Any], settings: dict[str, Any]):
        import torch

        from models.runtimes.device import choose_device
        from server.pipeline.model_manager import load_model
        from server.store.db import open_database
        from server.store.gallery import Gallery

        config = Settings(**settings)
        device = choose_device(config.device)
        if device.type == "cpu":
            torch.set_num_threads(max(1, config.torch_threads))
        # The server's choice of model, built with the server's options and gallery.
        gallery = Gallery(open_database(config.resolved_database_url))
        self.type, self.params = type_, params
        self.model = load_model(config, type_, device, gallery)

    def __call__(self, batch: Any) -> Any:
        from PIL import Image

        from models.images import DecodedImage, ImageInfo
        from server.pipeline import stages

        rows = batch.to_dict("records")
        todo, images = [], []
        for row in rows:
            if self.type in json.loads(row["pending"]) and row["rgb"]:
                info = ImageInfo(**json.loads(row["info"]))
                size = tuple(json.loads(row["rgb_size"]))
                todo.append(row)
                images.append(DecodedImage(info, Image.frombytes("RGB", size, row["rgb"])))
        results = stages.analyse_decoded(self.model, self.type, images, self.params)
        for row, result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                status, message, data = *error_status(result), None
            else:
                status, message, data = 200, "OK", result.data()
            lines = json.loads(row["lines"])
            lines.append(
                make_line(
                    row["path"], row["sha256"], self.type, self.params, status, message, data
                )
            )
            row["lines"] = json.dumps(lines)
            row["pending"] = json.dumps([t for t in json.loads(row["pending"]) if t != self.type])
        for row in rows:
            row["rgb"] = b""
            _with_node(row)
        return type(batch)(rows)


def run_ray(
    job: Job,
    settings: Settings,
    results: ResultsFile,
    tally: Tally,
    address: str | None,
    show: bool,
) -> bool:
    """Runs the job on Ray; False when it was interrupted before the end."""
    try:
        import ray
    except ImportError:
        raise RunError("--engine ray needs Ray: pip install 'imagerecognize[ray]'") from None
    for type_ in job.types:  # a type without a model fails here, before any work
        if settings.model_class(type_) is None:
            raise RunError(f"type {type_}: no model for it on this machine")
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except Exception as exc:
        raise RunError(f"cannot start or join Ray ({type(exc).__name__}: {exc})") from None
    interrupted = False
    try:
        interrupted = not _run(ray, job, settings, results, tally, show)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        tally.close()
        ray.shutdown()
    return not interrupted


def _say_if_busy(ray: Any, fit: Fit, types: int) -> None:
    """A job that fits the cluster may still wait for what other jobs hold: say so, rather
    than wait silently."""
    needed = types * fit.actors * fit.actor_cpus + fit.task_cpus
    free = ray.available_resources().get("CPU", 0.0)
    if free < needed:
        print(
            f"waiting for the Ray cluster: this job needs {needed:g} logical CPUs "
            f"({fit.describe(types)}), {free:g} are free now",
            file=sys.stderr,
        )


def _run(ray: Any, job: Job, settings: Settings, results: ResultsFile, tally: Tally, show: bool):
    from ray.data import DataContext

    # Before the walk: a job that cannot fit fails at once.
    fit = fit_job([node["Resources"] for node in ray.nodes() if node.get("Alive")], len(job.types))
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    tally.open_bar()
    paths = []
    for found in walk(job.sources):
        if found.problem is None:
            paths.append({"path": found.path})
            continue
        status, message = error_status(found.problem)
        lines = [
            make_line(found.path, None, t, job.params[t], status, message, None)
            for t in job.types
            if line_key(found.path, None, t, job.params[t]) not in results
        ]
        results.append(lines)
        tally.add(lines)
    if not paths:
        return True
    _say_if_busy(ray, fit, len(job.types))
    gpus = fit.actor_gpus > 0
    config = settings.model_dump(mode="json")
    params = job.params
    blocks = min(len(paths), max(4 * fit.actors, len(paths) // 32))
    ds = ray.data.from_items(paths, override_num_blocks=blocks)
    ds = ds.map(
        read_row,
        fn_kwargs={
            "types": list(job.types),
            "params": params,
            "done": results.keys,
            "max_bytes": settings.max_upload_bytes,
        },
        num_cpus=fit.task_cpus,
    )
    for type_ in job.types:
        cls = settings.model_class(type_)
        assert cls is not None  # checked in run_ray
        batch_size, _ = settings.batch_limits(
            type_, cls.cuda_batch_size if gpus else cls.cpu_batch_size
        )
        ds = ds.map(
            decode_row,
            fn_kwargs={"type_": type_, "params": params[type_], "settings": config},
            num_cpus=fit.task_cpus,
        )
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_kwargs={"type_": type_, "params": params[type_], "settings": config},
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=fit.actors),
            num_gpus=fit.actor_gpus,
            num_cpus=fit.actor_cpus,
        )
    ds = ds.select_columns(["lines", "nodes"])
    worked_on: set[str] = set()
    buffered: list[list[dict[str, Any]]] = []
    flushed = time.monotonic()

    def flush() -> None:
        results.append([line for lines in buffered for line in lines])
        buffered.clear()

    # The bar moves with every file that comes back, as the local engine's does; its lines
    # are written in groups. Until the first, the actors are loading their models.
    tally.describe("loading models")
    loading = True
    try:
        for row in ds.iter_rows():
            if loading:  # the rate counts from here, as the local engine's from its warm-up
                tally.describe(None)
                tally.working_since = time.perf_counter()
                loading = False
            worked_on.update(json.loads(row["nodes"]))
            lines = json.loads(row["lines"])
            buffered.append(lines)
            tally.add(lines)
            if len(buffered) >= FLUSH_LINES or time.monotonic() - flushed > FLUSH_S:
                flush()
                flushed = time.monotonic()
    except KeyboardInterrupt:
        flush()
        return False
    except Exception as exc:
        flush()
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RunError(f"the Ray job failed: {first}") from None
    flush()
    tally.nodes = len(worked_on)
    return True
