"""The gallery of known people: enrolment, removal, and the descriptor matrix that matching
searches (exact nearest neighbour with numpy)."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.images import ImageError, decode_image, inspect_image
from server.errors import InputError
from server.store import audit
from server.store.db import FaceDescriptor, GalleryFace, GalleryState, Person

STATE_ROW = 1
MAX_NAME_CHARS = 200  # Person.name
MAX_SOURCE_CHARS = 500  # GalleryFace.source


class GalleryError(InputError):
    """A gallery operation that cannot be carried out; the message is for the operator."""


def check_name(name: str) -> str:
    """``name`` if the database can hold it (PostgreSQL refuses NUL and overlong text)."""
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"name (longer than {MAX_NAME_CHARS} characters)")
    if "\x00" in name:
        raise GalleryError("name (contains a NUL character)")
    return name


def check_source(source: str) -> str:
    """A photo's file name if the database can hold it."""
    if len(source) > MAX_SOURCE_CHARS or "\x00" in source:
        raise GalleryError(
            f"file (a file name longer than {MAX_SOURCE_CHARS} characters or with NUL)"
        )
    return source


@dataclass(frozen=True)
class EnrolledFace:
    source: str  # the photo's name
    aligned: np.ndarray  # H x W x 3 uint8, the aligned face crop
    descriptor: np.ndarray  # float32


@dataclass(frozen=True)
class GalleryMatrix:
    """Every descriptor of one model: row i belongs to names[i]."""

    version: int
    names: list[str]
    vectors: np.ndarray  # N x D float32

    def __post_init__(self) -> None:
        # |g - q|² = |g|² - 2 g·q + |q|²: one matrix-vector product per query.
        object.__setattr__(self, "_norms", np.einsum("ij,ij->i", self.vectors, self.vectors))

    def nearest(self, query: np.ndarray) -> tuple[str, float] | None:
        """The nearest enrolled face's person and its Euclidean distance (exact search)."""
        if not self.names:
            return None
        query = query.astype(np.float32)
        squared = self._norms - 2.0 * (self.vectors @ query) + float(query @ query)
        best = int(np.argmin(squared))
        return self.names[best], float(np.sqrt(max(squared[best], 0.0)))


def enrolment_faces(
    model: Any, photos: list[tuple[str, bytes]], max_pixels: int
) -> list[EnrolledFace]:
    """Each photo's one face, aligned and described by ``model`` (a FaceRecognizer); a photo
    with no face, several faces, or that is not a readable PNG/JPEG is refused by name."""
    faces = []
    for source, data in photos:
        try:
            image = decode_image(data, inspect_image(data, max_pixels), model.input_max_side)
        except ImageError as exc:
            raise GalleryError(f"{source}: {exc}") from None
        with model.autocast():  # the precision its served answers have
            (described,) = model.predict([model.preprocess(image)])
        if not described:
            raise GalleryError(f"{source}: no face found")
        if len(described) > 1:
            raise GalleryError(
                f"{source}: {len(described)} faces found, enrol a photo of one person"
            )
        faces.append(EnrolledFace(source, described[0].chip, described[0].descriptor))
    return faces


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class Gallery:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._cache: dict[str, GalleryMatrix] = {}
        self._lock = threading.Lock()

    def version(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(GalleryState.version).where(GalleryState.id == STATE_ROW)
            ).scalar_one_or_none()
        return int(value or 0)

    @staticmethod
    def _bump(session: Session) -> None:
        updated = session.execute(
            update(GalleryState)
            .where(GalleryState.id == STATE_ROW)
            .values(version=GalleryState.version + 1)
        ).rowcount
        if not updated:
            session.add(GalleryState(id=STATE_ROW, version=1))

    def enrol(
        self,
        name: str,
        faces: list[EnrolledFace],
        model: str,
        *,
        actor: str = audit.CLI_ACTOR,
    ) -> dict[str, Any]:
        """Adds faces to a person (created if new), all or nothing; audited as done by
        ``actor`` (server/store/audit.py), like every change here."""
        name = check_name(name.strip())
        if not name:
            raise GalleryError("a person needs a name")
        if not faces:
            raise GalleryError("no photo given")
        for face in faces:
            check_source(face.source)
        try:
            with Session(self.engine) as session, session.begin():
                person = session.scalars(select(Person).where(Person.name == name)).first()
                if person is None:
                    person = Person(name=name)
                    session.add(person)
                    session.flush()
                added = []
                for face in faces:
                    row = GalleryFace(
                        person_id=person.id, source=face.source, aligned_png=_png(face.aligned)
                    )
                    session.add(row)
                    session.flush()
                    session.add(
                        FaceDescriptor(
                            face_id=row.id,
                            model=model,
                            vector=face.descriptor.astype("<f4").tobytes(),
                        )
                    )
                    added.append(row.id)
                self._bump(session)
                # Face ids, not photos or their file names: the log outlives a removal.
                audit.record(
                    session, actor, audit.PERSON_ENROLLED, name, {"face_ids": added, "model": model}
                )
        except IntegrityError as exc:
            raise GalleryError(f"could not enrol {name!r}: {exc.orig}") from exc
        return {"name": name, "face_ids": added}

    def people(self, model: str | None = None) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Person.name, GalleryFace.id, GalleryFace.source)
                .join(GalleryFace, GalleryFace.person_id == Person.id, isouter=True)
                .order_by(Person.name, GalleryFace.id)
            ).all()
            indexed = set()
            if model is not None:
                indexed = set(
                    session.scalars(
                        select(FaceDescriptor.face_id).where(FaceDescriptor.model == model)
                    )
                )
        people: dict[str, dict[str, Any]] = {}
        for person, face_id, source in rows:
            entry = people.setdefault(person, {"name": person, "faces": []})
            if face_id is not None:
                face = {"id": face_id, "source": source}
                if model is not None:
                    face["indexed"] = face_id in indexed
                entry["faces"].append(face)
        return list(people.values())

    def remove_person(self, name: str, *, actor: str = audit.CLI_ACTOR) -> None:
        check_name(name)
        with Session(self.engine) as session, session.begin():
            person = session.scalars(select(Person).where(Person.name == name)).first()
            if person is None:
                raise GalleryError(f"no person named {name!r}")
            removed = list(
                session.scalars(select(GalleryFace.id).where(GalleryFace.person_id == person.id))
            )
            # Explicit deletes: SQLite enforces ON DELETE CASCADE only with a pragma.
            session.execute(delete(FaceDescriptor).where(FaceDescriptor.face_id.in_(removed)))
            session.execute(delete(GalleryFace).where(GalleryFace.person_id == person.id))
            session.delete(person)
            self._bump(session)
            audit.record(session, actor, audit.PERSON_REMOVED, name, {"face_ids": removed})

    def remove_face(self, name: str, face_id: int, *, actor: str = audit.CLI_ACTOR) -> None:
        check_name(name)
        with Session(self.engine) as session, session.begin():
            face = session.execute(
                select(GalleryFace)
                .join(Person, Person.id == GalleryFace.person_id)
                .where(Person.name == name, GalleryFace.id == face_id)
            ).scalar_one_or_none()
            if face is None:
                raise GalleryError(f"{name!r} has no face {face_id}")
            session.execute(delete(FaceDescriptor).where(FaceDescriptor.face_id == face_id))
            session.delete(face)
            self._bump(session)
            audit.record(session, actor, audit.FACE_REMOVED, name, {"face_id": face_id})

    def aligned_faces(self) -> list[tuple[int, np.ndarray]]:
        """Every enrolled face's aligned crop, for reindexing."""
        with Session(self.engine) as session:
            rows = session.execute(select(GalleryFace.id, GalleryFace.aligned_png)).all()
        return [
            (face_id, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            for face_id, data in rows
        ]

    def set_descriptors(self, model: str, descriptors: dict[int, np.ndarray]) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(FaceDescriptor).where(FaceDescriptor.model == model))
            for face_id, vector in descriptors.items():
                session.add(
                    FaceDescriptor(
                        face_id=face_id, model=model, vector=vector.astype("<f4").tobytes()
                    )
                )
            self._bump(session)

    def matrix(self, model: str) -> GalleryMatrix:
        """The descriptors of ``model``, from memory while the gallery is unchanged."""
        version = self.version()
        cached = self._cache.get(model)
        if cached is not None and cached.version == version:
            return cached
        with self._lock, Session(self.engine) as session:
            rows = session.execute(
                select(Person.name, FaceDescriptor.vector)
                .join(GalleryFace, GalleryFace.id == FaceDescriptor.face_id)
                .join(Person, Person.id == GalleryFace.person_id)
                .where(FaceDescriptor.model == model)
                .order_by(FaceDescriptor.face_id)
            ).all()
        vectors = (
            np.stack([np.frombuffer(v, dtype="<f4") for _, v in rows])
            if rows
            else np.zeros((0, 1), dtype=np.float32)
        )
        built = GalleryMatrix(version, [name for name, _ in rows], vectors.astype(np.float32))
        self._cache[model] = built
        return built
