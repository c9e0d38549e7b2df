"""Reading a labelled folder into the images to evaluate and their truth, one layout per type:

- objects: one sub-folder per label (`cat/`, `cup/`), `none/` for images with none of them;
- nsfw: `nsfw/` and `sfw/`;
- detect_faces: `faces/` (at least one face) and `none/` (no face);
- celebrities: one sub-folder per person enrolled in the gallery, `unknown/` for strangers;
- detect_text: images anywhere under the folder, each with a `.txt` of the same name beside it;
- objects and detect_faces with ``--annotations instances.json`` (COCO): any layout; the
  images the file lists, their labels and boxes from its annotations.

What is wrong with the folder as a whole (missing, empty, a label the type does not know) is
a FolderError (exit status 2); a single file that cannot be used is a Skipped line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

from server.collection.evaluate.metrics import Box
from server.collection.files import walk

TEXT_SUFFIX = ".txt"
FACE = "face"  # the one label of detect_faces
FACES_FOLDER = "faces"


class FolderError(Exception):
    """The labelled folder cannot be evaluated; the message says why and what to do."""


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    labels: frozenset[str]  # what the image shows (celebrities: the person; empty: none)
    text: str | None = None  # detect_text: the expected text


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Dataset:
    type: str
    root: Path
    labels: tuple[str, ...]  # the labels evaluated, sorted
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    # With annotations: per image path, per label, the annotated boxes (and crowd regions).
    boxes: dict[str, dict[str, list[Box]]] | None = None
    crowds: dict[str, dict[str, list[Box]]] | None = None

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))


@dataclass(frozen=True)
class FolderRules:
    """The sub-folders a label layout accepts: ``negative`` holds images with no label;
    ``allowed``: the labels the type can answer (None: any); ``rename``: folder -> label."""

    negative: str | None
    allowed: frozenset[str] | None
    rename: dict[str, str] = field(default_factory=dict)
    what: str = "label"  # in messages: "label", "person"


def _check_root(root: Path) -> None:
    if not root.exists():
        raise FolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"{root} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise FolderError(f"{root}: cannot read the folder (permission denied)")


def _files(folder: Path, dataset: Dataset) -> Iterator[str]:
    """The files under a folder; an unreadable sub-folder stops the evaluation (its images
    would silently be missing), an unreadable file is a Skipped line."""
    for found in walk([str(folder)]):
        name = os.path.basename(found.path)
        if found.problem is not None:
            if os.path.isdir(found.path) or found.path == str(folder):
                raise FolderError(f"{found.path}: {found.problem.status_message}")
            dataset.skip(found.path, found.problem.status_message)
        elif name.startswith("."):
            dataset.skip(found.path, "hidden file")
        else:
            yield found.path


def _unknown_message(unknown: list[str], rules: FolderRules, type_: str) -> str:
    parts = []
    for name in unknown:
        close = get_close_matches(name, sorted(rules.allowed or ()), n=3)
        parts.append(f"{name}/" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if rules.what == "person":
        hint = "every sub-folder must be a person enrolled in the gallery, or unknown/"
    else:
        accepted = sorted(rules.allowed or ())
        listed = ", ".join(f"{n}/" for n in accepted) if len(accepted) <= 8 else "its labels"
        negative = f", or {rules.negative}/" if rules.negative else ""
        hint = f"{type_} accepts {listed}{negative}"
    return f"{rules.what} folders {type_} does not know: {'; '.join(parts)}; {hint}"


def read_label_folders(root: Path, type_: str, rules: FolderRules) -> Dataset:
    """One sub-folder per label (sub-folders below them belong to it)."""
    _check_root(root)
    root = root.resolve()
    dataset = Dataset(type_, root, (), [])
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as exc:
        raise FolderError(f"{root}: cannot read the folder ({exc.strerror})") from None
    folders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            folders.append(entry)
        else:
            dataset.skip(entry.path, f"not in a {rules.what} sub-folder")
    if not folders:
        raise FolderError(
            f"{root} has no sub-folders: put each {rules.what}'s images in a sub-folder named "
            f"after it" + (f", and images with none in {rules.negative}/" if rules.negative else "")
        )
    unknown = [
        entry.name
        for entry in folders
        if entry.name != rules.negative
        and rules.allowed is not None
        and entry.name not in rules.allowed
    ]
    if unknown:
        raise FolderError(_unknown_message(unknown, rules, type_))
    labels = []
    for entry in folders:
        files = list(_files(Path(entry.path), dataset))
        if not files:
            raise FolderError(f"{entry.path}/ holds no files: add images or remove the folder")
        label = None if entry.name == rules.negative else rules.rename.get(entry.name, entry.name)
        if label is not None:
            labels.append(label)
        truth = frozenset() if label is None else frozenset({label})
        dataset.samples.extend(Sample(path, truth) for path in files)
    if not labels:
        raise FolderError(
            f"{root} holds only {rules.negative}/: add at least one {rules.what} sub-folder"
        )
    dataset.labels = tuple(sorted(labels))
    return dataset


def read_text_folder(root: Path) -> Dataset:
    """Images with their expected text in a `.txt` of the same name beside them."""
    _check_root(root)
    root = root.resolve()
    dataset = Dataset("detect_text", root, (), [])
    files = list(_files(root, dataset))
    if not files:
        raise FolderError(f"{root} holds no files: put images there, each with its .txt")
    texts = {path for path in files if path.lower().endswith(TEXT_SUFFIX)}
    images = [path for path in files if path not in texts]
    used_texts = set()
    for image in images:
        stem = os.path.splitext(image)[0]
        text_path = next((t for t in (stem + ".txt", stem + ".TXT") if t in texts), None)
        if text_path is None:
            dataset.skip(image, f"no {os.path.basename(stem)}.txt beside it with its text")
            continue
        used_texts.add(text_path)
        try:
            expected = Path(text_path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            dataset.skip(image, f"{os.path.basename(text_path)} is not UTF-8 text")
            continue
        except OSError as exc:
            dataset.skip(image, f"cannot read {os.path.basename(text_path)} ({exc.strerror})")
            continue
        dataset.samples.append(Sample(image, frozenset(), expected))
    for text_path in sorted(texts - used_texts):
        dataset.skip(text_path, "a .txt with no image of the same name beside it")
    if not dataset.samples:
        raise FolderError(
            f"{root} holds no image with a .txt beside it (e.g. sign.jpg and sign.txt)"
        )
    dataset.labels = ("text",)
    return dataset


def read_annotated(
    root: Path, type_: str, annotations: Path, allowed: frozenset[str] | None
) -> Dataset:
    """COCO instances: `images` (`id`, `file_name` relative to the folder), `annotations`
    (`image_id`, `category_id`, `bbox` [x, y, width, height] in pixels, optional `iscrowd`)
    and `categories` (`id`, `name`). For detect_faces every box is a face."""
    _check_root(root)
    root = root.resolve()
    coco = _load_coco(annotations)
    categories = {c["id"]: str(c["name"]) for c in coco["categories"]}
    if type_ == "detect_faces":
        categories = {key: FACE for key in categories}
    dataset = Dataset(type_, root, (), [], boxes={}, crowds={})
    assert dataset.boxes is not None and dataset.crowds is not None
    by_id: dict[object, str] = {}
    for image in coco["images"]:
        path = (root / str(image["file_name"])).resolve()
        by_id[image["id"]] = str(path)
    boxes: dict[str, dict[str, list[Box]]] = {path: {} for path in by_id.values()}
    crowds: dict[str, dict[str, list[Box]]] = {path: {} for path in by_id.values()}
    used: set[str] = set()
    for index, annotation in enumerate(coco["annotations"]):
        where = f"{annotations}: annotation {index}"
        path = by_id.get(annotation.get("image_id"))
        name = categories.get(annotation.get("category_id"))
        bbox = annotation.get("bbox")
        if path is None or name is None:
            raise FolderError(f"{where} names an image_id or category_id the file lacks")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise FolderError(f"{where}: bbox must be [x, y, width, height]")
        box = (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
        target = crowds if annotation.get("iscrowd") else boxes
        target[path].setdefault(name, []).append(box)
        used.add(name)
    if allowed is not None and (unknown := sorted(used - allowed)):
        close = {n: get_close_matches(n, sorted(allowed), n=1) for n in unknown}
        named = "; ".join(n + (f" (did you mean {c[0]}?)" if c else "") for n, c in close.items())
        raise FolderError(f"{annotations}: categories {type_} does not know: {named}")
    if not used:
        raise FolderError(f"{annotations} has no annotations")
    listed = set(by_id.values())
    found = set(_files(root, dataset)) - {str(annotations.resolve())}
    for path in sorted(found - listed):
        dataset.skip(path, f"not listed in {annotations.name}")
    for path in sorted(listed - found):
        dataset.skip(path, f"listed in {annotations.name} but not found")
    for path in sorted(listed & found):
        labels = frozenset(boxes[path])
        dataset.samples.append(Sample(path, labels))
        dataset.boxes[path] = boxes[path]
        dataset.crowds[path] = crowds[path]
    if not dataset.samples:
        raise FolderError(f"none of the images {annotations.name} lists are under {root}")
    dataset.labels = tuple(sorted(used))
    return dataset


def _load_coco(annotations: Path) -> dict:
    try:
        coco = json.loads(annotations.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FolderError(f"{annotations}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise FolderError(f"{annotations} is not JSON: {exc}") from None
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise FolderError(
            f"{annotations} is not COCO instances: it needs lists 'images', 'annotations' "
            f"and 'categories'"
        )
    for key, fields in (("images", ("id", "file_name")), ("categories", ("id", "name"))):
        for index, item in enumerate(coco[key]):
            if not isinstance(item, dict) or any(f not in item for f in fields):
                raise FolderError(f"{annotations}: {key}[{index}] needs {' and '.join(fields)}")
    if not all(isinstance(a, dict) for a in coco["annotations"]):
        raise FolderError(f"{annotations}: every annotation must be an object")
    return coco


def labels_in(samples: Iterable[Sample]) -> set[str]:
    return {label for sample in samples for label in sample.labels}
