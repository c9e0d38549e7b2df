"""Enrolling people in the gallery: photos to aligned, described faces to the gallery's rows.

The one place the CLI (`gallery add`, `import`, `reindex`) and the HTTP gallery routes enrol
through. ``model`` is a loaded celebrities model (a FaceRecognizer), handed in by the caller:
the store does not load models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from server.store import audit
from server.store.gallery import (
    DEFAULT_COLLECTION,
    Gallery,
    GalleryError,
    check_external_image_id,
    check_name,
    check_source,
    enrolment_faces,
)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
REINDEX_CHUNK = 32  # crops described per model call


def enrol_photos(
    gallery: Gallery,
    model: Any,
    name: str,
    photos: list[tuple[str, bytes]],
    max_pixels: int,
    min_probability: float | None = None,
    *,
    actor: str = audit.CLI_ACTOR,
    collection: str = DEFAULT_COLLECTION,
    external_image_id: str | None = None,
) -> dict[str, Any]:
    """Adds one face from each photo to ``name`` in ``collection``, all or nothing, audited
    as done by ``actor``; what the database cannot hold is refused before the model runs.
    ``min_probability`` (0..1): faces the detector is less sure of do not count. Each face
    keeps its photo's new image id, ``external_image_id``, its box and probability."""
    check_name(name)
    for source, _ in photos:
        check_source(source)
    check_external_image_id(external_image_id)
    faces = enrolment_faces(model, photos, max_pixels, min_probability, external_image_id)
    return gallery.enrol(
        name, faces, model.descriptor_name, actor=actor, collection=collection
    )


def folder_photos(root: Path) -> list[tuple[str, Path]]:
    """(person, photo) for each PNG or JPEG in the sub-folders of ``root``, one per person."""
    return [
        (folder.name, photo)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for photo in sorted(folder.iterdir())
        if photo.suffix.lower() in PHOTO_SUFFIXES
    ]


@dataclass
class ImportReport:
    photos: int  # photos found
    people: int  # people they are of
    skipped: list[str] = field(default_factory=list)  # why each skipped photo was

    @property
    def enrolled(self) -> int:
        return self.photos - len(self.skipped)


def import_folder(
    gallery: Gallery,
    model: Any,
    work: list[tuple[str, Path]],
    max_pixels: int,
    on_skip: Callable[[str], None] = lambda reason: None,
    collection: str = DEFAULT_COLLECTION,
) -> ImportReport:
    """Enrols each photo on its own, so that one bad photo is reported (``on_skip``) and
    skipped without losing the others; a progress bar on stderr."""
    report = ImportReport(len(work), len({name for name, _ in work}))
    for name, photo in tqdm(work, unit="photo", desc="enrolling", leave=False):
        try:
            enrol_photos(
                gallery, model, name, [(str(photo), photo.read_bytes())], max_pixels,
                collection=collection,
            )
        except (GalleryError, OSError) as exc:
            report.skipped.append(str(exc))
            on_skip(str(exc))
    return report


def reindex(gallery: Gallery, model: Any) -> int:
    """Describes every kept aligned crop again with ``model``; the number of faces."""
    faces = gallery.aligned_faces()
    descriptors = {}
    for start in tqdm(range(0, len(faces), REINDEX_CHUNK), unit="batch", leave=False):
        chunk = faces[start : start + REINDEX_CHUNK]
        vectors = model.describe([chip for _, chip in chunk])
        descriptors.update({face_id: v for (face_id, _), v in zip(chunk, vectors, strict=True)})
    gallery.set_descriptors(model.descriptor_name, descriptors)
    return len(descriptors)
