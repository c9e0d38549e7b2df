"""`imagerecognize gallery ...`: the gallery of known people and its collections."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.catalog import FACES_TYPE
from server.cli.output import printable
from server.settings import Settings


def _gallery(settings: Settings):
    from server.store.db import open_database
    from server.store.gallery import Gallery

    return Gallery(open_database(settings.resolved_database_url))


def _face_model(settings: Settings):
    """The gallery, and the celebrities model loaded in this process."""
    from server.pipeline.model_manager import load_model

    gallery = _gallery(settings)
    return gallery, load_model(settings, FACES_TYPE, gallery=gallery)


def _collection_exists(settings: Settings, collection: str) -> bool:
    """Whether ``collection`` exists (said on stderr when not), before a model is loaded."""
    from server.store.gallery import GalleryError

    try:
        _gallery(settings).describe_collection(collection)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _enrol(settings: Settings, name: str, paths: list[Path], collection: str) -> int:
    from server.store.enrolment import enrol_photos
    from server.store.gallery import GalleryError

    gallery, model = _face_model(settings)
    try:
        photos = [(str(path), path.read_bytes()) for path in paths]
        enrol_photos(
            gallery, model, name, photos, settings.max_image_pixels, collection=collection
        )
    except (GalleryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{printable(name)}: {len(photos)} face(s) enrolled")
    return 0


def cmd_gallery_add(args: argparse.Namespace, settings: Settings) -> int:
    paths = [Path(p) for p in args.images]
    # Checked before the face model is loaded (seconds), not after.
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    if not _collection_exists(settings, args.collection):
        return 1
    return _enrol(settings, args.name, paths, args.collection)


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
    if not _collection_exists(settings, args.collection):
        return 1
    gallery, model = _face_model(settings)
    report = import_folder(
        gallery, model, work, settings.max_image_pixels,
        on_skip=lambda reason: print(f"skipped {reason}", file=sys.stderr),
        collection=args.collection,
    )
    print(
        f"{report.enrolled} photos of {report.people} people enrolled, "
        f"{len(report.skipped)} skipped",
        file=sys.stderr,
    )
    return 1 if report.skipped else 0


def cmd_gallery_list(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.gallery import DEFAULT_COLLECTION, GalleryError

    cls = settings.model_class(FACES_TYPE)
    descriptor = getattr(cls, "descriptor_name", None)
    try:
        people = _gallery(settings).people(descriptor, collection=args.collection)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for person in people:
        stale = sum(1 for face in person["faces"] if not face.get("indexed", True))
        note = f"  ({stale} need `gallery reindex`)" if stale else ""
        # Names come from API clients too: their control characters are shown, not obeyed.
        print(f"{printable(person['name']):<30} {len(person['faces'])} face(s){note}")
    if not people:
        where = (
            "the gallery" if args.collection == DEFAULT_COLLECTION
            else f"collection {printable(args.collection)}"
        )
        print(f"{where} is empty", file=sys.stderr)
    return 0


def cmd_gallery_remove(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.gallery import GalleryError

    try:
        _gallery(settings).remove_person(args.name, collection=args.collection)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"removed {printable(args.name)}")
    return 0


def cmd_gallery_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Recomputes every descriptor, of every collection, with the configured model from the
    kept aligned crops."""
    from server.store.enrolment import reindex

    gallery, model = _face_model(settings)
    count = reindex(gallery, model)
    print(f"{count} face(s) described with {model.descriptor_name}")
    return 0


def cmd_collections_list(args: argparse.Namespace, settings: Settings) -> int:
    print(f"{'collection':<30} {'people':>7} {'faces':>7}  created (UTC)")
    for info in _gallery(settings).collections():
        print(
            f"{printable(info.name):<30} {info.people:>7} {info.faces:>7}  "
            f"{info.created_at:%Y-%m-%d %H:%M:%S}"
        )
    return 0


def cmd_collections_create(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.gallery import GalleryError

    try:
        name = _gallery(settings).create_collection(args.name)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created collection {printable(name)}")
    return 0


def cmd_collections_delete(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.gallery import GalleryError

    try:
        people, faces = _gallery(settings).delete_collection(args.name)
    except GalleryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"deleted collection {printable(args.name)}: {people} people, {faces} face(s)")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    from server.store.gallery import DEFAULT_COLLECTION

    def collection_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--collection",
            default=DEFAULT_COLLECTION,
            metavar="NAME",
            help=f"the collection (default {DEFAULT_COLLECTION!r}, the one the v2, DeepStack "
            "and CompreFace APIs use)",
        )

    gallery = commands.add_parser("gallery", help="the gallery of known people").add_subparsers(
        dest="gallery_command", required=True
    )
    add = gallery.add_parser("add", help="enrol a person from one or more photos of them")
    add.add_argument("name")
    add.add_argument("images", nargs="+")
    collection_option(add)
    add.set_defaults(func=cmd_gallery_add)
    import_ = gallery.add_parser(
        "import",
        help="enrol every person of a folder (one sub-folder per person, named after them)",
    )
    import_.add_argument("directory")
    collection_option(import_)
    import_.set_defaults(func=cmd_gallery_import)
    list_ = gallery.add_parser("list", help="list people")
    collection_option(list_)
    list_.set_defaults(func=cmd_gallery_list)
    remove = gallery.add_parser("remove", help="remove a person and their descriptors")
    remove.add_argument("name")
    collection_option(remove)
    remove.set_defaults(func=cmd_gallery_remove)
    gallery.add_parser(
        "reindex", help="recompute descriptors after a model switch (every collection)"
    ).set_defaults(func=cmd_gallery_reindex)

    collections = gallery.add_parser(
        "collections", help="named collections of people"
    ).add_subparsers(dest="collections_command", required=True)
    collections.add_parser(
        "list", help="each collection with its numbers of people and faces"
    ).set_defaults(func=cmd_collections_list)
    create = collections.add_parser("create", help="create an empty collection")
    create.add_argument("name")
    create.set_defaults(func=cmd_collections_create)
    delete = collections.add_parser(
        "delete",
        help=f"delete a collection with its people and faces (not {DEFAULT_COLLECTION!r}: "
        "empty that one with `gallery remove`)",
    )
    delete.add_argument("name")
    delete.set_defaults(func=cmd_collections_delete)
