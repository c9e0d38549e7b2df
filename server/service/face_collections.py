"""Searching collections face by face, for the dialects whose collections hold faces rather
than people (Rekognition's SearchFaces, SearchFacesByImage), and the similarity scale those
dialects answer on.

Similarity (0..100) is calibrated so that 80, the default threshold of AWS's clients
(``FaceMatchThreshold``, ``SimilarityThreshold``), is exactly the gallery's match threshold:
``100 - 20 x distance / threshold``, 100 for an identical face, 80 at
IMAGERECOGNIZE_CELEBRITIES_THRESHOLD, less for strangers (0 from five thresholds on). With
the defaults a client then matches exactly whom the gallery matches.
"""

from __future__ import annotations

import functools

import numpy as np
from starlette.concurrency import run_in_threadpool

from server.store.face_search import FaceSearch
from server.store.gallery import FaceRecord, Gallery

# The similarity at the gallery's threshold distance, and how much one threshold costs.
SIMILARITY_AT_THRESHOLD = 80.0
_SIMILARITY_PER_THRESHOLD = 100.0 - SIMILARITY_AT_THRESHOLD


def similarity(distance: float, threshold: float) -> float:
    """A descriptor distance on the 0..100 similarity scale (80 at the threshold)."""
    value = 100.0 - _SIMILARITY_PER_THRESHOLD * distance / threshold
    return round(min(max(value, 0.0), 100.0), 4)


def descriptor_similarity(first: np.ndarray, second: np.ndarray, threshold: float) -> float:
    """How alike two face descriptors are, on the similarity scale."""
    return similarity(float(np.linalg.norm(first - second)), threshold)


def distance_below(min_similarity: float, threshold: float) -> float:
    """The largest distance whose similarity is at least ``min_similarity`` (inclusive: a
    hair more, so that a face exactly at it still matches)."""
    return (100.0 - min_similarity) * threshold / _SIMILARITY_PER_THRESHOLD + 1e-9


def similarity_from_match_confidence(confidence: float) -> float:
    """The celebrities' match confidence (100 x (1 - d / 2t), 50 at the threshold) on the
    similarity scale: the same distance, written the other way."""
    return round(min(max(100.0 - 0.4 * (100.0 - confidence), 0.0), 100.0), 4)


class FaceCollections:
    """Face-level search of the gallery's collections (AwsSupport holds one)."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self.search = FaceSearch(gallery)

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
