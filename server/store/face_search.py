"""Searching a collection face by face (the gallery's own matrix answers by person): every
face's descriptor with what the store keeps of the face, for APIs whose matches are faces
(Rekognition's SearchFaces and SearchFacesByImage). Exact nearest neighbours with numpy, the
matrix kept in memory while its collection is unchanged."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.store.db import Collection, FaceDescriptor, GalleryFace, Person
from server.store.gallery import DEFAULT_COLLECTION, FaceRecord, Gallery, face_record


@dataclass(frozen=True)
class FaceMatrix:
    version: int
    faces: list[FaceRecord]  # row i of vectors is faces[i]
    vectors: np.ndarray  # N x D float32
    _norms: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_norms", np.einsum("ij,ij->i", self.vectors, self.vectors))

    def nearest(
        self, query: np.ndarray, count: int, below: float
    ) -> list[tuple[FaceRecord, float]]:
        """Up to ``count`` faces nearer than ``below``, nearest first, with their distance."""
        if not self.faces or count < 1:
            return []
        query = query.astype(np.float32)
        squared = self._norms - 2.0 * (self.vectors @ query) + float(query @ query)
        distances = np.sqrt(np.maximum(squared, 0.0))
        found = []
        for row in np.argsort(distances, kind="stable")[:count]:
            if distances[row] >= below:
                break
            found.append((self.faces[row], float(distances[row])))
        return found


class FaceSearch:
    """Face-level matrices of a gallery's collections, one per (collection, model)."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self._cache: dict[tuple[str, str], FaceMatrix] = {}
        self._lock = threading.Lock()

    def matrix(self, model: str, *, collection: str = DEFAULT_COLLECTION) -> FaceMatrix:
        version = self.gallery.version(collection=collection)  # CollectionNotFoundError
        cached = self._cache.get((collection, model))
        if cached is not None and cached.version == version:
            return cached
        with self._lock, Session(self.gallery.engine) as session:
            rows = session.execute(
                select(GalleryFace, Person.name, FaceDescriptor.vector)
                .join(FaceDescriptor, FaceDescriptor.face_id == GalleryFace.id)
                .join(Person, Person.id == GalleryFace.person_id)
                .join(Collection, Collection.id == Person.collection_id)
                .where(FaceDescriptor.model == model, Collection.name == collection)
                .order_by(GalleryFace.id)
            ).all()
            faces = [face_record(face, person) for face, person, _ in rows]
            vectors = (
                np.stack([np.frombuffer(v, dtype="<f4") for _, _, v in rows]).astype(np.float32)
                if rows
                else np.zeros((0, 1), dtype=np.float32)
            )
            built = FaceMatrix(version, faces, vectors)
            self._cache[(collection, model)] = built
        return built

