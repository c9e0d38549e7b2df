"""`imagerecognize evaluate`: read the labelled folder, analyse what is not analysed yet,
sweep, write the report. Exit status: 0 done; 1 the analysis could not run (a model that
cannot load, an unwritable results file); 2 the folder or the arguments cannot be evaluated
(nothing is analysed then); 130 interrupted (what was analysed is kept)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.collection.evaluate.analysis import (
    EVALUATION_PARAMS,
    InterruptedRunError,
    analyse,
    results_file_name,
)
from server.collection.evaluate.layouts import (
    FACE,
    FACES_FOLDER,
    Dataset,
    FolderError,
    FolderRules,
    labels_in,
    read_annotated,
    read_label_folders,
    read_text_folder,
)
from server.collection.evaluate.metrics import Target
from server.collection.evaluate.report import terminal_table, write_html, write_json
from server.collection.evaluate.scoring import score_celebrities, score_labels, score_text
from server.collection.files import RunError
from server.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ANNOTATED_TYPES = ("objects", "detect_faces")
# Celebrities are analysed with this many times the threshold in use, so that the sweep sees
# the distances of near misses too (a face matches nobody beyond the analysed threshold).
CELEBRITIES_REACH = 3.0


@dataclass(frozen=True)
class EvaluateRequest:
    folder: Path
    type: str
    out: Path
    target: str | None = None
    annotations: Path | None = None
    results: Path | None = None  # default: OUT/analysis/<type>-<model>.jsonl
    progress: bool | None = None


def objects_vocabulary() -> frozenset[str]:
    """Every name the objects models can answer: COCO's and the classifier's ImageNet ones."""
    from models.objects.coco import COCO_LABELS
    from models.objects.imagenet import ImageNetClassifier, readable_imagenet_labels

    names = set(COCO_LABELS.values())
    folder = ImageNetClassifier.folder()
    if folder is not None and (folder / "efficientnet_labels.txt").is_file():
        names.update(readable_imagenet_labels(folder / "efficientnet_labels.txt"))
    return frozenset(names)


@dataclass
class Gallery:
    people: frozenset[str]
    version: int
    stale: list[str]  # people with no descriptor of the model in use


def _gallery(settings: Settings, descriptor: str) -> Gallery:
    from server.store.db import open_database
    from server.store.gallery import Gallery as Store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings.resolved_database_url)
    try:
        store = Store(engine)
        people = store.people(descriptor)
        stale = [
            p["name"] for p in people if p["faces"] and not any(f["indexed"] for f in p["faces"])
        ]
        return Gallery(frozenset(p["name"] for p in people), store.version(), stale)
    finally:
        engine.dispose()


def read_dataset(request: EvaluateRequest, gallery: Gallery | None) -> Dataset:
    type_ = request.type
    if request.annotations is not None:
        if type_ not in ANNOTATED_TYPES:
            raise FolderError(
                f"--annotations gives boxes: it works with {' and '.join(ANNOTATED_TYPES)}, "
                f"not {type_}"
            )
        allowed = objects_vocabulary() if type_ == "objects" else None
        return read_annotated(request.folder, type_, request.annotations, allowed)
    if type_ == "detect_text":
        return read_text_folder(request.folder)
    if type_ == "objects":
        rules = FolderRules("none", objects_vocabulary())
    elif type_ == "nsfw":
        rules = FolderRules(None, frozenset({"nsfw", "sfw"}))
    elif type_ == "detect_faces":
        rules = FolderRules("none", frozenset({FACES_FOLDER}), {FACES_FOLDER: FACE})
    elif type_ == "celebrities":
        assert gallery is not None
        rules = FolderRules("unknown", gallery.people, what="person")
    else:
        raise FolderError(f"unknown type {type_!r}")
    return read_label_folders(request.folder, type_, rules)


def run_evaluate(request: EvaluateRequest, settings: Settings) -> int:
    try:
        target = Target.parse(request.target)
    except ValueError as exc:
        print(f"error: --target {exc}", file=sys.stderr)
        return EXIT_USAGE
    cls = settings.model_class(request.type)
    if cls is None:
        print(f"error: type {request.type} has no model on this server", file=sys.stderr)
        return EXIT_FAILED
    gallery = None
    extra = ""
    analysis_settings = settings
    threshold_in_use = analysed_threshold = 0.0
    if request.type == "celebrities":
        gallery = _gallery(settings, cls.descriptor_name)  # type: ignore[attr-defined]
        if not gallery.people:
            print(
                "error: the gallery is empty: enrol the people first "
                "(`imagerecognize gallery import FOLDER`)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        for name in gallery.stale:
            print(
                f"warning: {name} has no descriptor of {cls.name}: run "
                f"`imagerecognize gallery reindex`",
                file=sys.stderr,
            )
        threshold_in_use = float(
            settings.celebrities_threshold
            if settings.celebrities_threshold is not None
            else cls.default_threshold  # type: ignore[attr-defined]
        )
        analysed_threshold = round(CELEBRITIES_REACH * threshold_in_use, 4)
        analysis_settings = settings.model_copy(
            update={"celebrities_threshold": analysed_threshold}
        )
        extra = f"-gallery{gallery.version}-t{analysed_threshold:g}"
    try:
        dataset = read_dataset(request, gallery)
    except FolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results_path = request.results or request.out / "analysis" / results_file_name(
        request.type, cls.name, extra
    )
    try:
        request.out.mkdir(parents=True, exist_ok=True)
        done = analyse(dataset, analysis_settings, results_path, request.progress)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot write {request.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except InterruptedRunError as exc:
        print(f"evaluate: {exc}; run it again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"analysis: {done.analysed} images analysed, {done.reused} reused from {done.results_path}",
        file=sys.stderr,
    )
    data: dict[str, dict[str, Any]] = {}
    model: dict[str, Any] | None = None
    for sample in dataset.samples:
        line = done.lines.get(sample.path)
        if line is None:
            dataset.skip(sample.path, "no result (the analysis stopped before it)")
        elif line["status"] != 200:
            dataset.skip(sample.path, f"{line['status']} {line['status_message']}")
        else:
            data[sample.path] = line["data"]
            model = model or line["data"].get("model")
    for item in dataset.skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    used = [s for s in dataset.samples if s.path in data]
    if not used:
        print(f"error: no image of {request.folder} could be used", file=sys.stderr)
        return EXIT_USAGE
    present = labels_in(used)
    if request.type != "detect_text" and (lost := [x for x in dataset.labels if x not in present]):
        print(
            f"error: no usable image left of {', '.join(lost)} (see the skipped lines above)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if request.type == "detect_text":
        scores = score_text(dataset, data)
    elif request.type == "celebrities":
        scores = score_celebrities(dataset, data, target, analysed_threshold, threshold_in_use)
    else:
        scores = score_labels(dataset, data, target)
    report: dict[str, Any] = {
        "report_version": 1,
        "type": request.type,
        "folder": str(dataset.root),
        "annotations": str(request.annotations) if request.annotations else None,
        "model": model,
        "target": {
            "metric": target.metric,
            "value": target.value,
            "describe": target.describe(),
        },
        "analysis": {
            "results_file": str(done.results_path),
            "params": EVALUATION_PARAMS.get(request.type, {}),
            "analysed": done.analysed,
            "reused": done.reused,
        },
        "images": {
            "used": len(used),
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        },
        **scores,
    }
    write_json(report, request.out)
    write_html(report, request.out)
    print(terminal_table(report))
    print(f"report: {request.out / 'report.json'}, {request.out / 'index.html'}", file=sys.stderr)
    return EXIT_OK
