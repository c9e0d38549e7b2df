"""The gallery of known people: enrolment, removal, and the descriptor matrix that matching
searches (exact nearest neighbour with numpy)."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from models.images import ImageError, decode_image, inspect_image
from server.errors import InputError
from server.store import audit
from server.store.db import Collection, FaceDescriptor, GalleryFace, GalleryState, Person

STATE_ROW = 1
MAX_NAME_CHARS = 200  # Person.name, Collection.name
MAX_SOURCE_CHARS = 500  # GalleryFace.source
MAX_EXTERNAL_IMAGE_ID_CHARS = 255  # GalleryFace.external_image_id
FACE_ID_CHARS = 36  # GalleryFace.public_id: a UUID
# The collection the v2, DeepStack and CompreFace APIs use: the gallery as it was before
# collections (migration 0004). It can be emptied, never deleted.
DEFAULT_COLLECTION = "default"


class GalleryError(InputError):
    """A gallery operation that cannot be carried out; the message is for the operator."""


# Kinds of GalleryError that an API dialect may answer with codes of its own; every one is
# still a GalleryError (the v2 gallery answers 421 to all of them alike).
class NoFaceError(GalleryError):
    """A photo to enrol shows no face."""


class ManyFacesError(GalleryError):
    """A photo to enrol shows more than one face."""


class UnreadablePhotoError(GalleryError):
    """A photo to enrol is not an image the server reads (or too large)."""


class PersonNotFoundError(GalleryError):
    """No person of that name is enrolled."""


class PersonExistsError(GalleryError):
    """A person of that name is enrolled already."""


class FaceNotFoundError(GalleryError):
    """No enrolled face has that id (or not under that person)."""


class CollectionNotFoundError(GalleryError):
    """No collection has that name."""


class CollectionExistsError(GalleryError):
    """A collection of that name exists already."""


class ChangedMeanwhileError(GalleryError):
    """The gallery changed under an operation (another writer); trying again may succeed."""


def check_name(name: str, what: str = "name") -> str:
    """``name`` if the database can hold it (PostgreSQL refuses NUL and overlong text) and
    clients can address it: not ``.`` or ``..`` (a URL path segment of its own, which HTTP
    clients drop: ``DELETE /subjects/..`` would reach ``DELETE /subjects``), no control
    characters (C0, DEL, C1: they forge lines in logs and terminals), no lone surrogates
    (no encoding can write them)."""
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"{what} (longer than {MAX_NAME_CHARS} characters)")
    if name.strip() in {".", ".."}:
        raise GalleryError(f"{what} ({name.strip()!r} cannot be told from a path in a URL)")
    for char in name:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            raise GalleryError(f"{what} (contains the control character U+{code:04X})")
        if 0xD800 <= code <= 0xDFFF:
            raise GalleryError(f"{what} (contains a lone surrogate U+{code:04X}, not text)")
    return name


def check_source(source: str) -> str:
    """A photo's file name if the database can hold it."""
    if (
        len(source) > MAX_SOURCE_CHARS
        or "\x00" in source
        or any(0xD800 <= ord(char) <= 0xDFFF for char in source)
    ):
        raise GalleryError(
            f"file (a file name longer than {MAX_SOURCE_CHARS} characters, with NUL or a lone"
            " surrogate)"
        )
    return source


def check_external_image_id(value: str | None) -> str | None:
    if value is not None and (
        len(value) > MAX_EXTERNAL_IMAGE_ID_CHARS
        or "\x00" in value
        or any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    ):
        raise GalleryError(
            f"external image id (longer than {MAX_EXTERNAL_IMAGE_ID_CHARS} characters, with NUL"
            " or a lone surrogate)"
        )
    return value


Box = tuple[float, float, float, float]  # left, top, width, height as ratios of the image


@dataclass(frozen=True)
class EnrolledFace:
    source: str  # the photo's name
    aligned: np.ndarray  # H x W x 3 uint8, the aligned face crop
    descriptor: np.ndarray  # float32
    # Where it came from, kept when given: a UUID naming the input image, the client's name
    # for that image, the detector's box and its probability (0..1).
    image_id: str | None = None
    external_image_id: str | None = None
    box: Box | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as the store keeps it (no crop, no descriptor)."""

    id: str
    person: str
    source: str
    created_at: datetime
    image_id: str | None
    external_image_id: str | None
    box: Box | None
    confidence: float | None


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    faces: int
    people: int
    created_at: datetime


@dataclass(frozen=True)
class GalleryMatrix:
    """Every descriptor of one model: row i belongs to names[i]."""

    version: int
    names: list[str]
    vectors: np.ndarray  # N x D float32

    def __post_init__(self) -> None:
        # |g - q|² = |g|² - 2 g·q + |q|²: one matrix-vector product per query.
        object.__setattr__(self, "_norms", np.einsum("ij,ij->i", self.vectors, self.vectors))

    def _squared_distances(self, query: np.ndarray) -> np.ndarray:
        query = query.astype(np.float32)
        return self._norms - 2.0 * (self.vectors @ query) + float(query @ query)

    def nearest(self, query: np.ndarray) -> tuple[str, float] | None:
        """The nearest enrolled face's person and its Euclidean distance (exact search)."""
        if not self.names:
            return None
        squared = self._squared_distances(query)
        best = int(np.argmin(squared))
        return self.names[best], float(np.sqrt(max(squared[best], 0.0)))

    def nearest_people(
        self, query: np.ndarray, count: int, below: float
    ) -> list[tuple[str, float]]:
        """Up to ``count`` different people, nearest first, each with the distance of their
        nearest face, keeping only those nearer than ``below`` (exact search)."""
        if not self.names or count < 1:
            return []
        squared = self._squared_distances(query)
        found: list[tuple[str, float]] = []
        seen: set[str] = set()
        for row in np.argsort(squared, kind="stable"):
            distance = float(np.sqrt(max(squared[row], 0.0)))
            if distance >= below:
                break  # sorted: every later face is farther still
            name = self.names[row]
            if name not in seen:
                seen.add(name)
                found.append((name, distance))
                if len(found) == count:
                    break
        return found


def enrolment_faces(
    model: Any,
    photos: list[tuple[str, bytes]],
    max_pixels: int,
    min_probability: float | None = None,
    external_image_id: str | None = None,
) -> list[EnrolledFace]:
    """Each photo's one face, aligned and described by ``model`` (a FaceRecognizer); a photo
    with no face, several faces, or that is not a readable PNG/JPEG is refused by name.
    ``min_probability`` (0..1): faces the detector is less sure of do not count. Each face
    keeps a new image id for its photo, ``external_image_id``, its box and probability."""
    faces = []
    for source, data in photos:
        try:
            image = decode_image(data, inspect_image(data, max_pixels), model.input_max_side)
        except ImageError as exc:
            raise UnreadablePhotoError(f"{source}: {exc}") from None
        item = model.preprocess(image)
        with model.autocast():  # the precision its served answers have
            (described,) = model.predict([item])
        if min_probability is not None:
            described = [d for d in described if d.face.probability >= min_probability]
        if not described:
            raise NoFaceError(f"{source}: no face found")
        if len(described) > 1:
            raise ManyFacesError(
                f"{source}: {len(described)} faces found, enrol a photo of one person"
            )
        found = described[0]
        height, width = item.pixels.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in found.face.box.tolist())
        faces.append(
            EnrolledFace(
                source,
                found.chip,
                found.descriptor,
                image_id=str(uuid.uuid4()),
                external_image_id=external_image_id,
                box=(x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height),
                confidence=float(found.face.probability),
            )
        )
    return faces


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _lookup(name: str, what: str = "name") -> str:
    """``name`` if the database can be asked for it (the rules for new names are
    check_name's: a person enrolled before them can still be found and removed)."""
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"{what} (longer than {MAX_NAME_CHARS} characters)")
    if "\x00" in name or any(0xD800 <= ord(char) <= 0xDFFF for char in name):
        raise GalleryError(f"{what} (contains a NUL character or a lone surrogate)")
    return name


def _face_id(face_id: str | int) -> str:
    """A face id as the store keeps it: text (a UUID, or an old face's integer id); one that
    no face can have is not found."""
    text = str(face_id).strip().lower()
    if not text or len(text) > FACE_ID_CHARS or not text.isascii() or not text.isprintable():
        raise FaceNotFoundError(f"no face {text[:FACE_ID_CHARS]!r}")
    return text


def _possible_face_ids(face_ids: list[str]) -> Iterator[str]:
    for face_id in face_ids:
        try:
            yield _face_id(face_id)
        except FaceNotFoundError:
            continue  # no face has it


def _image_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise GalleryError(f"image id {value!r} (not a UUID)") from None


def _box(face: GalleryFace) -> Box | None:
    parts = (face.box_left, face.box_top, face.box_width, face.box_height)
    return None if any(part is None for part in parts) else tuple(parts)  # type: ignore[return-value]


def face_record(face: GalleryFace, person: str) -> FaceRecord:
    """What the store keeps of one enrolled face, as the layers above see it."""
    return FaceRecord(
        id=face.public_id,
        person=person,
        source=face.source,
        created_at=face.created_at,
        image_id=face.image_id,
        external_image_id=face.external_image_id,
        box=_box(face),
        confidence=face.confidence,
    )


def _where(collection: str) -> dict[str, str]:
    """What an audit entry adds to say which collection; nothing for the default one, so
    that its entries read as before collections."""
    return {} if collection == DEFAULT_COLLECTION else {"collection": collection}


class Gallery:
    """The gallery's operations; every one takes ``collection`` (the default collection
    when not given, which is what the APIs without collections use)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._cache: dict[tuple[str, str], GalleryMatrix] = {}
        self._lock = threading.Lock()

    @contextmanager
    def _change(self) -> Iterator[Session]:
        """A transaction for one change of the gallery. Its first statement moves the
        gallery_state counter on: that takes the row's lock on PostgreSQL and the write lock
        on SQLite, so that gallery changes run one at a time and each reads what the one
        before wrote (no rename acting on a row another rename just deleted)."""
        try:
            with Session(self.engine) as session, session.begin():
                self._bump(session)
                yield session
        except (IntegrityError, StaleDataError) as exc:
            # Not expected under the lock; never the database's own text to a client.
            raise ChangedMeanwhileError(
                "the gallery changed meanwhile (another change at the same time); try again"
            ) from exc

    @staticmethod
    def _bump(session: Session) -> None:
        updated = session.execute(
            update(GalleryState)
            .where(GalleryState.id == STATE_ROW)
            .values(version=GalleryState.version + 1)
        ).rowcount
        if not updated:
            session.add(GalleryState(id=STATE_ROW, version=1))
            session.flush()

    @staticmethod
    def _touch(session: Session, *collection_ids: int) -> None:
        """Marks the collections' descriptors changed: their version becomes the counter's,
        which no earlier content of any collection had."""
        current = select(GalleryState.version).where(GalleryState.id == STATE_ROW)
        session.execute(
            update(Collection)
            .where(Collection.id.in_(collection_ids))
            .values(version=current.scalar_subquery())
        )

    @staticmethod
    def _collection(session: Session, name: str) -> Collection:
        found = session.scalars(
            select(Collection).where(Collection.name == _lookup(name, "collection name"))
        ).first()
        if found is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return found

    @staticmethod
    def _person(session: Session, collection: Collection, name: str) -> Person | None:
        return session.scalars(
            select(Person).where(
                Person.collection_id == collection.id, Person.name == _lookup(name)
            )
        ).first()

    def version(self, *, collection: str = DEFAULT_COLLECTION) -> int:
        """A number that changes whenever the collection's descriptors change."""
        with Session(self.engine) as session:
            return int(self._collection(session, collection).version)

    # Collections.

    def create_collection(self, name: str, *, actor: str = audit.CLI_ACTOR) -> str:
        name = check_name(name.strip(), "collection name")
        if not name:
            raise GalleryError("a collection needs a name")
        with self._change() as session:
            if session.scalars(select(Collection.id).where(Collection.name == name)).first():
                raise CollectionExistsError(f"a collection named {name!r} exists already")
            session.add(Collection(name=name))
            session.flush()
            collection = self._collection(session, name)
            self._touch(session, collection.id)
            audit.record(session, actor, audit.COLLECTION_CREATED, name)
        return name

    def delete_collection(self, name: str, *, actor: str = audit.CLI_ACTOR) -> tuple[int, int]:
        """Deletes a collection with its people and faces: the numbers of people and faces
        removed. The default collection can be emptied (remove_everyone), not deleted."""
        if name == DEFAULT_COLLECTION:
            raise GalleryError(
                f"the {DEFAULT_COLLECTION!r} collection cannot be deleted (the APIs without"
                " collections use it); remove its people instead"
            )
        with self._change() as session:
            collection = self._collection(session, name)
            people = select(Person.id).where(Person.collection_id == collection.id)
            faces = self._remove_faces(session, GalleryFace.person_id.in_(people))
            removed = session.execute(
                delete(Person).where(Person.collection_id == collection.id)
            ).rowcount
            session.delete(collection)
            audit.record(
                session, actor, audit.COLLECTION_DELETED, name,
                {"people": removed, "faces": len(faces)},
            )
        self._forget(name)
        return removed, len(faces)

    def _forget(self, collection: str) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == collection]:
                del self._cache[key]

    def _infos(self, session: Session, which: Any) -> list[CollectionInfo]:
        people = (
            select(func.count(Person.id))
            .where(Person.collection_id == Collection.id)
            .scalar_subquery()
        )
        faces = (
            select(func.count(GalleryFace.id))
            .join(Person, Person.id == GalleryFace.person_id)
            .where(Person.collection_id == Collection.id)
            .scalar_subquery()
        )
        rows = session.execute(
            select(Collection.name, faces, people, Collection.created_at)
            .where(which)
            .order_by(Collection.id)
        ).all()
        return [CollectionInfo(name, int(f), int(p), created) for name, f, p, created in rows]

    def collections(self) -> list[CollectionInfo]:
        """Every collection, oldest first, with its numbers of faces and people."""
        with Session(self.engine) as session:
            return self._infos(session, Collection.id.is_not(None))

    def describe_collection(self, name: str) -> CollectionInfo:
        with Session(self.engine) as session:
            found = self._infos(session, Collection.name == _lookup(name, "collection name"))
        if not found:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return found[0]

    # People and faces.

    def enrol(
        self,
        name: str,
        faces: list[EnrolledFace],
        model: str,
        *,
        actor: str = audit.CLI_ACTOR,
        collection: str = DEFAULT_COLLECTION,
    ) -> dict[str, Any]:
        """Adds faces to a person (created if new), all or nothing; audited as done by
        ``actor`` (server/store/audit.py), like every change here. Each new face gets a new
        UUID as its id (``face_ids``)."""
        name = check_name(name.strip())
        if not name:
            raise GalleryError("a person needs a name")
        if not faces:
            raise GalleryError("no photo given")
        for face in faces:
            check_source(face.source)
            check_external_image_id(face.external_image_id)
        with self._change() as session:
            where = self._collection(session, collection)
            person = self._person(session, where, name)
            if person is None:
                person = Person(collection_id=where.id, name=name)
                session.add(person)
                session.flush()
            added = []
            for face in faces:
                box = face.box or (None, None, None, None)
                row = GalleryFace(
                    public_id=str(uuid.uuid4()),
                    person_id=person.id,
                    source=face.source,
                    aligned_png=_png(face.aligned),
                    image_id=_image_id(face.image_id),
                    external_image_id=face.external_image_id,
                    box_left=_float(box[0]),
                    box_top=_float(box[1]),
                    box_width=_float(box[2]),
                    box_height=_float(box[3]),
                    confidence=_float(face.confidence),
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
                added.append(row.public_id)
            self._touch(session, where.id)
            # Face ids, not photos or their file names: the log outlives a removal.
            audit.record(
                session, actor, audit.PERSON_ENROLLED, name,
                {"face_ids": added, "model": model, **_where(collection)},
            )
        return {"name": name, "face_ids": added}

    def people(
        self, model: str | None = None, *, collection: str = DEFAULT_COLLECTION
    ) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            where = self._collection(session, collection)
            rows = session.execute(
                select(Person.name, GalleryFace.id, GalleryFace.public_id, GalleryFace.source)
                .join(GalleryFace, GalleryFace.person_id == Person.id, isouter=True)
                .where(Person.collection_id == where.id)
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
        for person, row_id, face_id, source in rows:
            entry = people.setdefault(person, {"name": person, "faces": []})
            if face_id is not None:
                face = {"id": face_id, "source": source}
                if model is not None:
                    face["indexed"] = row_id in indexed
                entry["faces"].append(face)
        return list(people.values())

    def add_person(
        self, name: str, *, actor: str = audit.CLI_ACTOR, collection: str = DEFAULT_COLLECTION
    ) -> str:
        """A person with no faces yet (enrolment adds them later); refused if enrolled."""
        name = check_name(name.strip())
        if not name:
            raise GalleryError("a person needs a name")
        with self._change() as session:
            where = self._collection(session, collection)
            if self._person(session, where, name) is not None:
                raise PersonExistsError(f"{name!r} is enrolled already")
            session.add(Person(collection_id=where.id, name=name))
            # No descriptor changes: matching is unaffected, the collection's version stays.
            audit.record(session, actor, audit.PERSON_ADDED, name, _where(collection) or None)
        return name

    def rename_person(
        self,
        name: str,
        new_name: str,
        *,
        actor: str = audit.CLI_ACTOR,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        """Renames a person; into a name already enrolled, the faces join that person."""
        _lookup(name)
        new_name = check_name(new_name.strip())
        if not new_name:
            raise GalleryError("a person needs a name")
        with self._change() as session:
            where = self._collection(session, collection)
            person = self._person(session, where, name)
            if person is None:
                raise PersonNotFoundError(f"no person named {name!r}")
            if new_name == name:
                return
            target = self._person(session, where, new_name)
            if target is None:
                person.name = new_name
            else:
                session.execute(
                    update(GalleryFace)
                    .where(GalleryFace.person_id == person.id)
                    .values(person_id=target.id)
                )
                session.delete(person)
            self._touch(session, where.id)
            audit.record(
                session, actor, audit.PERSON_RENAMED, name,
                {"new_name": new_name, "merged": target is not None, **_where(collection)},
            )

    def remove_person(
        self, name: str, *, actor: str = audit.CLI_ACTOR, collection: str = DEFAULT_COLLECTION
    ) -> int:
        """Removes a person and their faces; the number of faces removed."""
        _lookup(name)
        with self._change() as session:
            where = self._collection(session, collection)
            person = self._person(session, where, name)
            if person is None:
                raise PersonNotFoundError(f"no person named {name!r}")
            removed = self._remove_faces(session, GalleryFace.person_id == person.id)
            session.delete(person)
            self._touch(session, where.id)
            audit.record(
                session, actor, audit.PERSON_REMOVED, name,
                {"face_ids": removed, **_where(collection)},
            )
        return len(removed)

    def remove_everyone(
        self, *, actor: str = audit.CLI_ACTOR, collection: str = DEFAULT_COLLECTION
    ) -> tuple[int, int]:
        """Empties a collection: the numbers of people and of faces removed."""
        with self._change() as session:
            where = self._collection(session, collection)
            members = select(Person.id).where(Person.collection_id == where.id)
            faces = self._remove_faces(session, GalleryFace.person_id.in_(members))
            people = session.execute(
                delete(Person).where(Person.collection_id == where.id)
            ).rowcount
            self._touch(session, where.id)
            audit.record(
                session, actor, audit.GALLERY_EMPTIED, None,
                {"people": people, "faces": len(faces), **_where(collection)},
            )
        return people, len(faces)

    @staticmethod
    def _remove_faces(session: Session, which: Any) -> list[str]:
        """Deletes the faces ``which`` selects with their descriptors; their ids."""
        rows = session.execute(
            select(GalleryFace.id, GalleryFace.public_id).where(which).order_by(GalleryFace.id)
        ).all()
        row_ids = [row_id for row_id, _ in rows]
        # Explicit deletes: SQLite enforces ON DELETE CASCADE only with a pragma.
        session.execute(delete(FaceDescriptor).where(FaceDescriptor.face_id.in_(row_ids)))
        session.execute(delete(GalleryFace).where(GalleryFace.id.in_(row_ids)))
        return [face_id for _, face_id in rows]

    @staticmethod
    def _in_collection(where: Collection) -> Any:
        return GalleryFace.person_id.in_(
            select(Person.id).where(Person.collection_id == where.id)
        )

    def remove_face(
        self,
        name: str,
        face_id: str,
        *,
        actor: str = audit.CLI_ACTOR,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        """Removes one face of the person ``name``."""
        _lookup(name)
        face_id = _face_id(face_id)
        with self._change() as session:
            where = self._collection(session, collection)
            person = self._person(session, where, name)
            removed = (
                self._remove_faces(
                    session,
                    (GalleryFace.person_id == person.id) & (GalleryFace.public_id == face_id),
                )
                if person is not None
                else []
            )
            if not removed:
                raise FaceNotFoundError(f"{name!r} has no face {face_id}")
            self._touch(session, where.id)
            audit.record(
                session, actor, audit.FACE_REMOVED, name,
                {"face_id": face_id, **_where(collection)},
            )

    def remove_face_by_id(
        self, face_id: str, *, actor: str = audit.CLI_ACTOR, collection: str = DEFAULT_COLLECTION
    ) -> str:
        """Removes one face, whoever it belongs to; the name of its person (who stays)."""
        face_id = _face_id(face_id)
        removed = self.remove_faces([face_id], actor=actor, collection=collection)
        if not removed:
            raise FaceNotFoundError(f"no face {face_id}")
        return removed[0][1]

    def remove_faces(
        self,
        face_ids: list[str],
        *,
        actor: str = audit.CLI_ACTOR,
        collection: str = DEFAULT_COLLECTION,
    ) -> list[tuple[str, str]]:
        """Removes the faces of ``face_ids`` that the collection holds, all in one change:
        (face id, person's name) of each, in the order asked; ids it does not hold are left
        out. Their people stay."""
        wanted = list(dict.fromkeys(_possible_face_ids(face_ids)))
        if not wanted:
            return []
        with self._change() as session:
            where = self._collection(session, collection)
            owners = dict(
                session.execute(
                    select(GalleryFace.public_id, Person.name)
                    .join(Person, Person.id == GalleryFace.person_id)
                    .where(Person.collection_id == where.id, GalleryFace.public_id.in_(wanted))
                ).all()
            )
            if not owners:
                return []
            self._remove_faces(session, GalleryFace.public_id.in_(list(owners)))
            self._touch(session, where.id)
            for face_id in wanted:
                if face_id in owners:
                    audit.record(
                        session, actor, audit.FACE_REMOVED, owners[face_id],
                        {"face_id": face_id, **_where(collection)},
                    )
        return [(face_id, owners[face_id]) for face_id in wanted if face_id in owners]

    def _faces_query(self, session: Session, collection: str, name: str | None) -> Any:
        where = self._collection(session, collection)
        which = (
            select(GalleryFace, Person.name)
            .join(Person, Person.id == GalleryFace.person_id)
            .where(Person.collection_id == where.id)
        )
        if name is not None:
            which = which.where(Person.name == _lookup(name))
        return which

    def faces(
        self,
        name: str | None = None,
        offset: int = 0,
        limit: int | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> tuple[list[tuple[str, str]], int]:
        """One page of enrolled faces as (face id, person), oldest first, of one person or of
        everyone; and how many there are in all."""
        records, total = self.face_records(offset, limit, name=name, collection=collection)
        return [(record.id, record.person) for record in records], total

    def face_records(
        self,
        offset: int = 0,
        limit: int | None = None,
        *,
        name: str | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> tuple[list[FaceRecord], int]:
        """One page of a collection's faces (of one person, or of everyone) with what the
        store keeps of each, oldest first; and how many there are in all."""
        with Session(self.engine) as session:
            which = self._faces_query(session, collection, name)
            total = session.scalar(select(func.count()).select_from(which.subquery())) or 0
            rows = session.execute(
                which.order_by(GalleryFace.id).offset(offset).limit(limit)
            ).all()
            records = [face_record(face, person) for face, person in rows]
        return records, int(total)

    def face_descriptor(
        self, face_id: str, model: str, *, collection: str = DEFAULT_COLLECTION
    ) -> np.ndarray:
        """The descriptor of one enrolled face by ``model`` (to search with a face by id)."""
        face_id = _face_id(face_id)
        with Session(self.engine) as session:
            where = self._collection(session, collection)
            row = session.execute(
                select(GalleryFace.id, FaceDescriptor.vector)
                .join(
                    FaceDescriptor,
                    (FaceDescriptor.face_id == GalleryFace.id) & (FaceDescriptor.model == model),
                    isouter=True,
                )
                .where(self._in_collection(where), GalleryFace.public_id == face_id)
            ).first()
        if row is None:
            raise FaceNotFoundError(f"no face {face_id}")
        if row.vector is None:
            raise GalleryError(
                f"face {face_id} has no descriptor by {model} (`imagerecognize gallery reindex`)"
            )
        return np.frombuffer(row.vector, dtype="<f4").astype(np.float32)

    def aligned_face(self, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> np.ndarray:
        """One enrolled face's aligned crop (H x W x 3 uint8), as kept."""
        face_id = _face_id(face_id)
        with Session(self.engine) as session:
            where = self._collection(session, collection)
            data = session.scalars(
                select(GalleryFace.aligned_png).where(
                    self._in_collection(where), GalleryFace.public_id == face_id
                )
            ).first()
        if data is None:
            raise FaceNotFoundError(f"no face {face_id}")
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def aligned_faces(self) -> list[tuple[str, np.ndarray]]:
        """Every enrolled face's aligned crop, of every collection, for reindexing."""
        with Session(self.engine) as session:
            rows = session.execute(select(GalleryFace.public_id, GalleryFace.aligned_png)).all()
        return [
            (face_id, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            for face_id, data in rows
        ]

    def set_descriptors(self, model: str, descriptors: dict[str, np.ndarray]) -> None:
        """Replaces every descriptor of ``model`` (by face id), in every collection."""
        with self._change() as session:
            row_ids = dict(session.execute(select(GalleryFace.public_id, GalleryFace.id)).all())
            session.execute(delete(FaceDescriptor).where(FaceDescriptor.model == model))
            for face_id, vector in descriptors.items():
                if face_id in row_ids:  # a face removed meanwhile is not described
                    session.add(
                        FaceDescriptor(
                            face_id=row_ids[face_id],
                            model=model,
                            vector=vector.astype("<f4").tobytes(),
                        )
                    )
            self._touch(session, *session.scalars(select(Collection.id)))

    def matrix(self, model: str, *, collection: str = DEFAULT_COLLECTION) -> GalleryMatrix:
        """The collection's descriptors of ``model``, from memory while it is unchanged."""
        version = self.version(collection=collection)
        cached = self._cache.get((collection, model))
        if cached is not None and cached.version == version:
            return cached
        with self._lock, Session(self.engine) as session:
            rows = session.execute(
                select(Person.name, FaceDescriptor.vector)
                .join(GalleryFace, GalleryFace.id == FaceDescriptor.face_id)
                .join(Person, Person.id == GalleryFace.person_id)
                .join(Collection, Collection.id == Person.collection_id)
                .where(FaceDescriptor.model == model, Collection.name == collection)
                .order_by(FaceDescriptor.face_id)
            ).all()
            vectors = (
                np.stack([np.frombuffer(v, dtype="<f4") for _, v in rows])
                if rows
                else np.zeros((0, 1), dtype=np.float32)
            )
            built = GalleryMatrix(version, [name for name, _ in rows], vectors.astype(np.float32))
            self._cache[(collection, model)] = built
        return built


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
