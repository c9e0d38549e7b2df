"""`imagerecognize gallery ...` without a model: collections, --collection, and names that
API clients chose printed safely (run in this process, on a SQLite database)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from server.settings import Settings
from server.store.db import Collection, Person, make_engine
from server.store.gallery import EnrolledFace, Gallery
from tests.conftest import make_settings
from tests.test_privacy import run_cli


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


def gallery_of(settings: Settings) -> Gallery:
    from server.store.db import open_database

    return Gallery(open_database(settings.resolved_database_url))


def enrolled(gallery: Gallery, name: str, collection: str) -> None:
    face = EnrolledFace("p.jpg", np.zeros((8, 8, 3), np.uint8), np.zeros(2, np.float32))
    gallery.enrol(name, [face], "some-descriptor", collection=collection)


def test_collections_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    assert run_cli(monkeypatch, settings, "gallery", "collections", "create", "staff") == 0
    assert capsys.readouterr().out == "created collection staff\n"
    assert run_cli(monkeypatch, settings, "gallery", "collections", "create", "staff") == 1
    assert "exists already" in capsys.readouterr().err
    gallery = gallery_of(settings)
    enrolled(gallery, "Ada", "staff")
    enrolled(gallery, "Ada", "default")
    enrolled(gallery, "Bob", "default")
    assert run_cli(monkeypatch, settings, "gallery", "collections", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["collection", "people", "faces", "created", "(UTC)"]
    assert [line.split()[:3] for line in lines[1:]] == [["default", "2", "2"],
                                                       ["staff", "1", "1"]]
    # --collection picks the collection; without it, the default one as before.
    assert run_cli(monkeypatch, settings, "gallery", "list", "--collection", "staff") == 0
    assert capsys.readouterr().out.split()[:3] == ["Ada", "1", "face(s)"]
    assert run_cli(monkeypatch, settings, "gallery", "list") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["Ada", "Bob"]
    assert run_cli(monkeypatch, settings, "gallery", "remove", "Ada", "--collection", "staff") == 0
    assert capsys.readouterr().out == "removed Ada\n"
    assert [p["name"] for p in gallery.people()] == ["Ada", "Bob"]
    assert run_cli(monkeypatch, settings, "gallery", "list", "--collection", "staff") == 0
    assert capsys.readouterr().err == "collection staff is empty\n"
    assert run_cli(monkeypatch, settings, "gallery", "list", "--collection", "nobody") == 1
    assert "no collection named 'nobody'" in capsys.readouterr().err
    # A photo to enrol into a collection that does not exist: refused before a model loads.
    photo = settings.data_dir / "photo.jpg"
    photo.write_bytes(b"not read")
    assert run_cli(monkeypatch, settings, "gallery", "add", "Eve", str(photo),
                   "--collection", "nobody") == 1
    assert "no collection named 'nobody'" in capsys.readouterr().err
    # The default collection is emptied, never deleted.
    assert run_cli(monkeypatch, settings, "gallery", "collections", "delete", "default") == 1
    assert "cannot be deleted" in capsys.readouterr().err
    assert run_cli(monkeypatch, settings, "gallery", "collections", "delete", "staff") == 0
    assert capsys.readouterr().out == "deleted collection staff: 0 people, 0 face(s)\n"
    assert [c.name for c in gallery.collections()] == ["default"]


def test_gallery_list_escapes_what_a_terminal_would_obey(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    gallery = gallery_of(settings)  # the schema, migrated
    # Names enrolled before such names were refused: written as an older server wrote them.
    hostile = ["Ada\x1b[2J\x1b[31mred", "Bob\r\nforged line", "Eve\u202eevil", "Zoë"]
    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        default = connection.scalar(select(Collection.id).where(Collection.name == "default"))
        for name in hostile:
            connection.execute(insert(Person).values(collection_id=default, name=name))
    engine.dispose()
    assert len(gallery.people()) == 4
    assert run_cli(monkeypatch, settings, "gallery", "list") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert [line.split()[0] for line in out.splitlines()] == [
        "Ada\\x1b[2J\\x1b[31mred", "Bob\\r\\nforged", "Eve\\u202eevil", "Zoë"
    ]
    # They can still be removed by their name.
    assert gallery.remove_person("Bob\r\nforged line") == 0
