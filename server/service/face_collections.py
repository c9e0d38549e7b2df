"""Faces in collections, face by face, for the dialects whose collections hold faces rather
than people (Rekognition's IndexFaces, ListFaces, SearchFaces, SearchFacesByImage), and the
similarity scale those dialects answer on.

Similarity (0..100) is calibrated so that 80, the default threshold of AWS's clients
(``FaceMatchThreshold``, ``SimilarityThreshold``), is exactly the gallery's match threshold:
``100 - 20 x distance / threshold``, 100 for an identical face, 80 at
IMAGERECOGNIZE_CELEBRITIES_THRESHOLD, less for strangers (0 from five thresholds on). With
the defaults a client then matches exactly whom the gallery matches.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from server.store.face_search import FaceSearch
from server.store.gallery import (
    DEFAULT_COLLECTION,
    Box,
    CollectionExistsError,
    CollectionInfo,
    CollectionNotFoundError,
    EnrolledFace,
    FaceNotFoundError,
    FaceRecord,
    Gallery,
    GalleryError,
)

# The gallery's errors that a dialect answers with codes of its own.
__all__ = [
    "CollectionExistsError",
    "CollectionNotFoundError",
    "FaceCollections",
    "FaceNotFoundError",
    "FaceToIndex",
    "GalleryError",
    "similarity",
]

# The similarity at the gallery's threshold distance, and how much one threshold costs.
SIMILARITY_AT_THRESHOLD = 80.0
_SIMILARITY_PER_THRESHOLD = 100.0 - SIMILARITY_AT_THRESHOLD


def similarity(distance: float, threshold: float) -> float:
    """A descriptor distance on the 0..100 similarity scale (80 at the threshold)."""
    value = 100.0 - _SIMILARITY_PER_THRESHOLD * distance / threshold
    return round(min(max(value, 0.0), 100.0), 4)


def distance_below(min_similarity: float, threshold: float) -> float:
    """The largest distance whose similarity is at least ``min_similarity`` (inclusive: a
    hair more, so that a face exactly at it still matches)."""
    return (100.0 - min_similarity) * threshold / _SIMILARITY_PER_THRESHOLD + 1e-9


def similarity_from_match_confidence(confidence: float) -> float:
    """The celebrities' match confidence (100 x (1 - d / 2t), 50 at the threshold) on the
    similarity scale: the same distance, written the other way."""
    return round(min(max(100.0 - 0.4 * (100.0 - confidence), 0.0), 100.0), 4)


@dataclass(frozen=True)
class FaceToIndex:
    """A face found in an image, to be kept in a collection."""

    chip: np.ndarray  # the aligned crop
    descriptor: np.ndarray
    box: Box  # ratios of the image
    confidence: float  # the detector's probability, 0..1


class FaceCollections:
    """Face-level work on the gallery's collections: the ApplicationService holds one."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self.search = FaceSearch(gallery)

    async def index(
        self,
        faces: Sequence[FaceToIndex],
        model: str,
        *,
        collection: str,
        external_image_id: str | None,
        actor: str,
    ) -> tuple[str, list[str]]:
        """Keeps each face in the collection, each as its own gallery face, all from one new
        image id: (image id, face ids in the order given). A face belongs to the person named
        by ``external_image_id`` (so that the default collection's celebrities know them by
        it), else to one named by the image id."""
        image_id = str(uuid.uuid4())
        enrolled = [
            EnrolledFace(
                source=external_image_id or image_id,
                aligned=face.chip,
                descriptor=face.descriptor,
                image_id=image_id,
                external_image_id=external_image_id,
                box=face.box,
                confidence=face.confidence,
            )
            for face in faces
        ]
        if not enrolled:
            return image_id, []
        done = await run_in_threadpool(
            functools.partial(
                self.gallery.enrol,
                external_image_id or image_id,
                enrolled,
                model,
                actor=actor,
                collection=collection,
            )
        )
        return image_id, list(done["face_ids"])

    async def search_faces(
        self,
        descriptor: np.ndarray,
        model: str,
        threshold: float,
        *,
        collection: str,
        max_faces: int,
        min_similarity: float,
        excluding: str | None = None,
    ) -> list[tuple[FaceRecord, float]]:
        """The collection's faces nearest to ``descriptor``, at least ``min_similarity``
        alike, most alike first, with their similarity (``excluding`` a face id)."""
        matrix = await run_in_threadpool(
            functools.partial(self.search.matrix, model, collection=collection)
        )
        extra = 1 if excluding is not None else 0
        found = matrix.nearest(
            descriptor, max_faces + extra, distance_below(min_similarity, threshold)
        )
        return [
            (face, similarity(distance, threshold))
            for face, distance in found
            if face.id != excluding
        ][:max_faces]

    async def descriptor(self, face_id: str, model: str, *, collection: str) -> np.ndarray:
        return await run_in_threadpool(
            functools.partial(self.gallery.face_descriptor, face_id, model, collection=collection)
        )

    async def faces(
        self, offset: int, limit: int, *, collection: str
    ) -> tuple[list[FaceRecord], int]:
        return await run_in_threadpool(
            functools.partial(self.gallery.face_records, offset, limit, collection=collection)
        )

    async def remove(
        self, face_ids: list[str], *, collection: str, actor: str
    ) -> list[str]:
        removed = await run_in_threadpool(
            functools.partial(
                self.gallery.remove_faces, face_ids, actor=actor, collection=collection
            )
        )
        return [face_id for face_id, _ in removed]

    async def describe(self, collection: str = DEFAULT_COLLECTION) -> CollectionInfo:
        return await run_in_threadpool(self.gallery.describe_collection, collection)
