"""The gallery's store operations that the CompreFace routes need (people without faces,
renames that merge, faces by id and by page, nearest people), on SQLite and PostgreSQL.

Descriptors here are chosen vectors, not a model's: these tests are about what the store
keeps and finds (tests/test_celebrities.py and tests/test_compat_compreface.py run the model)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from server.store.db import init_db, make_engine
from server.store.gallery import (
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
