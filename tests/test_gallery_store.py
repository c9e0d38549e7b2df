"""The gallery's store operations (people without faces, renames that merge, faces by id and
by page, nearest people, collections, face ids never issued twice, names clients can address,
changes at the same time), on SQLite and PostgreSQL.

Descriptors here are chosen vectors, not a model's: these tests are about what the store
keeps and finds (tests/test_celebrities.py and tests/test_compat_compreface.py run the model)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from server.store.db import init_db, make_engine
from server.store.gallery import (
    DEFAULT_COLLECTION,
    CollectionExistsError,
    CollectionNotFoundError,
    EnrolledFace,
    FaceNotFoundError,
    Gallery,
    GalleryError,
    PersonExistsError,
    PersonNotFoundError,
)
from tests.databases import database_url  # noqa: F401 - fixture

MODEL = "test-descriptor"
CROP = np.zeros((150, 150, 3), dtype=np.uint8)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:  # noqa: F811 - the fixture's parameter
    engine = make_engine(database_url)
    init_db(engine)
    yield engine
    engine.dispose()


def face(source: str, *vector: float) -> EnrolledFace:
    return EnrolledFace(source, CROP, np.array(vector, dtype=np.float32))


def test_people_without_faces_renames_and_merges(engine: Engine) -> None:
    gallery = Gallery(engine)
    assert gallery.add_person(" Ada ") == "Ada"
    with pytest.raises(PersonExistsError):
        gallery.add_person("Ada")
    assert gallery.people(MODEL) == [{"name": "Ada", "faces": []}]
    before = gallery.version()
    gallery.enrol("Grace", [face("g1.jpg", 1.0, 0.0)], MODEL)
    gallery.enrol("Ada", [face("a1.jpg", 0.0, 1.0)], MODEL)
    assert gallery.version() > before
    # A rename into a free name keeps the faces; into an enrolled one, the faces join.
    gallery.rename_person("Grace", "Grace Hopper")
    assert gallery.matrix(MODEL).names == ["Grace Hopper", "Ada"]
    gallery.rename_person("Ada", "Grace Hopper")
    assert [(p["name"], len(p["faces"])) for p in gallery.people()] == [("Grace Hopper", 2)]
    assert gallery.matrix(MODEL).names == ["Grace Hopper", "Grace Hopper"]
    with pytest.raises(PersonNotFoundError):
        gallery.rename_person("Ada", "Someone")
    with pytest.raises(GalleryError):
        gallery.rename_person("Grace Hopper", "  ")


def test_faces_by_page_by_id_and_removal(engine: Engine) -> None:
    gallery = Gallery(engine)
    grace = gallery.enrol("Grace", [face(f"g{i}.jpg", 1.0, float(i)) for i in range(3)], MODEL)
    ada = gallery.enrol("Ada", [face("a.jpg", 0.0, 1.0)], MODEL)
    every = [*((i, "Grace") for i in grace["face_ids"]), (ada["face_ids"][0], "Ada")]
    assert gallery.faces() == (every, 4)
    assert gallery.faces(offset=1, limit=2) == (every[1:3], 4)
    assert gallery.faces("Grace", offset=2, limit=2) == (every[2:3], 3)
    assert gallery.faces("Nobody") == ([], 0)
    # One face by its id alone: its person stays, with the others.
    assert gallery.remove_face_by_id(grace["face_ids"][0]) == "Grace"
    with pytest.raises(FaceNotFoundError):
        gallery.remove_face_by_id(grace["face_ids"][0])
    with pytest.raises(FaceNotFoundError):  # a face of someone else
        gallery.remove_face("Grace", ada["face_ids"][0])
    assert gallery.remove_person("Grace") == 2
    with pytest.raises(PersonNotFoundError):
        gallery.remove_person("Grace")
    assert gallery.matrix(MODEL).names == ["Ada"]
    gallery.add_person("Empty")
    assert gallery.remove_everyone() == (2, 1)
    assert gallery.people() == [] and gallery.matrix(MODEL).names == []


def test_nearest_people_are_distinct_sorted_and_under_the_bound(engine: Engine) -> None:
    gallery = Gallery(engine)
    gallery.enrol("A", [face("a1", 0.0, 0.0), face("a2", 0.1, 0.0)], MODEL)
    gallery.enrol("B", [face("b1", 0.3, 0.0)], MODEL)
    gallery.enrol("C", [face("c1", 2.0, 0.0)], MODEL)
    matrix = gallery.matrix(MODEL)
    query = np.array([0.12, 0.0], dtype=np.float32)
    found = matrix.nearest_people(query, 5, below=1.0)
    assert [name for name, _ in found] == ["A", "B"]  # A once, by its nearer face; C too far
    assert found[0][1] == pytest.approx(0.02, abs=1e-5)
    assert found[1][1] == pytest.approx(0.18, abs=1e-5)
    assert matrix.nearest_people(query, 1, below=1.0) == found[:1]
    assert matrix.nearest_people(query, 5, below=0.01) == []
    assert matrix.nearest(query) == ("A", pytest.approx(0.02, abs=1e-5))


def test_every_change_is_audited_with_its_actor(engine: Engine) -> None:
    from server.store.audit import AuditLog

    gallery = Gallery(engine)
    gallery.add_person("Ada", actor="key:admin")
    enrolled = gallery.enrol("Ada", [face("a1.jpg", 0.0, 1.0)], MODEL, actor="key:admin")
    gallery.rename_person("Ada", "Ada Lovelace", actor="key:admin")
    gallery.remove_face_by_id(enrolled["face_ids"][0], actor="key:admin")
    gallery.enrol("Grace", [face("g1.jpg", 1.0, 0.0)], MODEL)
    gallery.remove_everyone(actor="key:admin")
    entries = [(e.actor, e.action, e.subject) for e in reversed(AuditLog(engine).entries())]
    assert entries == [
        ("key:admin", "gallery.add_person", "Ada"),
        ("key:admin", "gallery.enrol", "Ada"),
        ("key:admin", "gallery.rename_person", "Ada"),
        ("key:admin", "gallery.remove_face", "Ada Lovelace"),
        ("cli", "gallery.enrol", "Grace"),
        ("key:admin", "gallery.remove_everyone", None),
    ]


def test_collections_round_trip_and_names_unique_per_collection(engine: Engine) -> None:
    gallery = Gallery(engine)
    assert [c.name for c in gallery.collections()] == [DEFAULT_COLLECTION]
    gallery.enrol("Ada", [face("a.jpg", 0.0, 1.0)], MODEL)
    assert gallery.create_collection(" staff ", actor="key:admin") == "staff"
    with pytest.raises(CollectionExistsError):
        gallery.create_collection("staff")
    # The same name in two collections: two people, each matched in their own collection.
    gallery.enrol("Ada", [face("a2.jpg", 1.0, 0.0), face("a3.jpg", 2.0, 0.0)], MODEL,
                  collection="staff")
    with pytest.raises(PersonExistsError):
        gallery.add_person("Ada", collection="staff")
    gallery.add_person("Bob", collection="staff")
    info = gallery.describe_collection("staff")
    assert (info.name, info.faces, info.people) == ("staff", 2, 2)
    assert [(c.name, c.faces, c.people) for c in gallery.collections()] == [
        (DEFAULT_COLLECTION, 1, 1), ("staff", 2, 2)
    ]
    assert gallery.matrix(MODEL).vectors.tolist() == [[0.0, 1.0]]
    assert gallery.matrix(MODEL, collection="staff").vectors.tolist() == [[1.0, 0.0], [2.0, 0.0]]
    # A change in one collection leaves the other's version (and the celebrities cache) as is.
    default_version = gallery.version()
    gallery.remove_person("Bob", collection="staff")
    assert gallery.version() == default_version
    assert [p["name"] for p in gallery.people(collection="staff")] == ["Ada"]
    # Faces are found and removed only in their own collection.
    (default_face,) = gallery.faces()[0]
    with pytest.raises(FaceNotFoundError):
        gallery.remove_face_by_id(default_face[0], collection="staff")
    with pytest.raises(CollectionNotFoundError):
        gallery.people(collection="nobody")
    with pytest.raises(CollectionNotFoundError):
        gallery.enrol("Eve", [face("e.jpg", 0.0, 0.0)], MODEL, collection="nobody")
    # The default collection can be emptied, not deleted.
    with pytest.raises(GalleryError, match="cannot be deleted"):
        gallery.delete_collection(DEFAULT_COLLECTION)
    assert gallery.delete_collection("staff", actor="key:admin") == (1, 2)
    with pytest.raises(CollectionNotFoundError):
        gallery.describe_collection("staff")
    with pytest.raises(CollectionNotFoundError):
        gallery.delete_collection("staff")
    assert gallery.people() == [{"name": "Ada", "faces": [{"id": default_face[0],
                                                            "source": "a.jpg"}]}]
    # Made again, it starts empty, with a version no earlier content had.
    gallery.create_collection("staff")
    assert gallery.matrix(MODEL, collection="staff").names == []
    assert gallery.version(collection="staff") > default_version

    from server.store.audit import AuditLog

    entries = [(e.actor, e.action, e.subject, e.details) for e in AuditLog(engine).entries()]
    assert ("key:admin", "gallery.delete_collection", "staff", {"people": 1, "faces": 2}) in entries
    assert ("key:admin", "gallery.create_collection", "staff", None) in entries


def test_a_removed_face_id_is_never_issued_again(engine: Engine) -> None:
    gallery = Gallery(engine)
    gallery.enrol("Ada", [face("a1.jpg", 0.0, 1.0)], MODEL)
    (newest,) = gallery.enrol("Grace", [face("g1.jpg", 1.0, 0.0)], MODEL)["face_ids"]
    assert str(uuid.UUID(newest)) == newest  # lowercase UUID text
    gallery.remove_face_by_id(newest)
    (added,) = gallery.enrol("Eve", [face("e1.jpg", 1.0, 1.0)], MODEL)["face_ids"]
    assert added != newest
    # A client deleting the id it saw earlier removes nobody else's face.
    with pytest.raises(FaceNotFoundError):
        gallery.remove_face_by_id(newest)
    with pytest.raises(FaceNotFoundError):
        gallery.remove_face("Eve", newest)
    assert [p["name"] for p in gallery.people()] == ["Ada", "Eve", "Grace"]
    assert gallery.faces("Eve") == ([(added, "Eve")], 1)
    # Ids no face can have are simply not found (no database error).
    for impossible in ("x" * 500, "a\x00b", "\ud800", ""):
        with pytest.raises(FaceNotFoundError):
            gallery.remove_face_by_id(impossible)


def test_faces_keep_where_they_came_from(engine: Engine) -> None:
    gallery = Gallery(engine)
    image_id = str(uuid.uuid4())
    kept = EnrolledFace("door.jpg", CROP, np.array([0.5, 0.25], np.float32), image_id=image_id,
                        external_image_id="door-cam/0001.jpg", box=(0.1, 0.2, 0.3, 0.4),
                        confidence=0.99)
    (first,) = gallery.enrol("Ada", [kept], MODEL)["face_ids"]
    (second,) = gallery.enrol("Bob", [face("b.jpg", 1.0, 1.0)], MODEL)["face_ids"]
    records, total = gallery.face_records()
    assert total == 2 and [r.id for r in records] == [first, second]
    assert (records[0].person, records[0].image_id, records[0].external_image_id) == (
        "Ada", image_id, "door-cam/0001.jpg"
    )
    assert records[0].box == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert records[0].confidence == pytest.approx(0.99)
    assert (records[1].image_id, records[1].box, records[1].confidence) == (None, None, None)
    assert gallery.face_records(offset=1, limit=5)[0] == records[1:]
    assert gallery.face_descriptor(first, MODEL).tolist() == [0.5, 0.25]
    with pytest.raises(FaceNotFoundError):
        gallery.face_descriptor(str(uuid.uuid4()), MODEL)
    with pytest.raises(GalleryError, match="no descriptor"):
        gallery.face_descriptor(first, "another-model")
    assert gallery.aligned_face(first).shape == CROP.shape
    with pytest.raises(GalleryError, match="external image id"):
        gallery.enrol("Ada", [EnrolledFace("x.jpg", CROP, np.zeros(2, np.float32),
                                            external_image_id="x" * 256)], MODEL)
    with pytest.raises(GalleryError, match="not a UUID"):
        gallery.enrol("Ada", [EnrolledFace("x.jpg", CROP, np.zeros(2, np.float32),
                                            image_id="17")], MODEL)
    # Several at once: the ones that exist are removed and named, the others left out.
    missing = str(uuid.uuid4())
    assert gallery.remove_faces([second, missing, first, second]) == [
        (second, "Bob"), (first, "Ada")
    ]
    assert gallery.faces() == ([], 0)
    assert gallery.remove_faces([first]) == []


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (".", "path"),
        ("..", "path"),
        (" .. ", "path"),
        ("Ada\nLovelace", "control character U+000A"),
        ("Ada\x1b[31m", "control character U+001B"),
        ("Ada\x7f", "control character U+007F"),
        ("Ada\x85Lovelace", "control character U+0085"),
        ("Ada\x00", "control character U+0000"),
        ("Ada\ud800", "lone surrogate"),
    ],
)
def test_names_clients_cannot_address_are_refused(engine: Engine, name: str, says: str) -> None:
    gallery = Gallery(engine)
    for change in (
        lambda: gallery.add_person(name),
        lambda: gallery.enrol(name, [face("a.jpg", 0.0, 1.0)], MODEL),
        lambda: gallery.create_collection(name),
    ):
        with pytest.raises(GalleryError, match=re.escape(says)):
            change()
    gallery.add_person("Ada")
    with pytest.raises(GalleryError, match=re.escape(says)):
        gallery.rename_person("Ada", name)
    assert gallery.people() == [{"name": "Ada", "faces": []}]
    # Dots inside a name, and names in other scripts, are fine.
    assert gallery.add_person("A. Lovelace...") == "A. Lovelace..."
    assert gallery.add_person("Ада Лавлейс") == "Ада Лавлейс"


def test_concurrent_renames_and_enrolments_give_clear_answers(engine: Engine) -> None:
    gallery = Gallery(engine)
    gallery.enrol("A", [face("a.jpg", 0.0, 1.0)], MODEL)
    gallery.enrol("B", [face("b.jpg", 1.0, 0.0)], MODEL)
    outcomes: list[str] = []

    def rename(number: int) -> None:
        old, new = ("A", "B") if number % 2 else ("B", "A")
        try:
            gallery.rename_person(old, new)
            outcomes.append("renamed")
        except PersonNotFoundError:  # merged into the other by an earlier rename
            outcomes.append("not found")

    def enrol(number: int) -> None:
        gallery.enrol("A" if number % 2 else "B", [face(f"{number}.jpg", 0.5, 0.5)], MODEL)
        outcomes.append("enrolled")

    # Ten renames of two subjects into each other, with faces added to them meanwhile: each
    # call succeeds or says the person is gone; none fails with the database's own error.
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(rename, i) for i in range(10)]
        futures += [pool.submit(enrol, i) for i in range(6)]
        for future in futures:
            future.result()
    assert outcomes.count("enrolled") == 6
    assert outcomes.count("renamed") >= 1
    people = gallery.people()
    assert sum(len(p["faces"]) for p in people) == 8
    assert len(gallery.matrix(MODEL).names) == 8
