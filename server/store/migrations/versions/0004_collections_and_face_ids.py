"""Collections of people, and face ids that are never issued twice.

- ``collections``: named sets of people; the gallery as it was becomes the collection named
  "default". ``people.collection_id`` says whose a person is, and names are unique within a
  collection instead of across the gallery.
- ``gallery_faces.public_id``: the face id clients see, a UUID for every new face; each face
  enrolled before keeps its integer id, as text ("17"). The integer primary key stays
  internal: SQLite (no AUTOINCREMENT) hands it out again after the newest face is deleted.
- Where a face came from, for the faces enrolled from now on: ``image_id`` (a UUID naming
  the input image), ``external_image_id`` (the client's name for it), the detector's box as
  ratios of the image (``box_left``, ``box_top``, ``box_width``, ``box_height``) and its
  ``confidence``; NULL for older faces.

SQLite cannot drop the unnamed UNIQUE(name) of ``people`` in place, and rebuilding ``people``
while ``gallery_faces`` refers to it would cascade-delete every face (the drop of the old
table is a DELETE when foreign keys are on, and the pragma cannot be turned off inside the
migration's transaction). So on SQLite the three gallery tables are copied aside, made again
and filled back, ids unchanged, in the one transaction. PostgreSQL alters them in place.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT_COLLECTION = "default"  # server/store/gallery.py
FACE_COLUMNS = (  # gallery_faces' columns before this revision
    "id", "person_id", "source", "aligned_png", "created_at",
)


def upgrade() -> None:
    bind = op.get_bind()
    version = bind.execute(sa.text("SELECT version FROM gallery_state WHERE id = 1")).scalar()
    if version is None:
        op.execute(sa.text("INSERT INTO gallery_state (id, version) VALUES (1, 0)"))
        version = 0
    _create_collections()
    collections = sa.table(
        "collections",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("version", sa.Integer),
    )
    op.bulk_insert(
        collections,
        [{"id": 1, "name": DEFAULT_COLLECTION, "created_at": datetime.now(UTC),
          "version": int(version)}],
    )
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite()
    else:
        _alter_in_place()


def _create_collections() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def _new_face_columns() -> list[sa.Column]:
    return [
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("external_image_id", sa.String(length=255), nullable=True),
        sa.Column("box_left", sa.Float(), nullable=True),
        sa.Column("box_top", sa.Float(), nullable=True),
        sa.Column("box_width", sa.Float(), nullable=True),
        sa.Column("box_height", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
    ]


def _indexes() -> None:
    op.create_index("ix_people_collection_id", "people", ["collection_id"])
    op.create_index("ix_gallery_faces_image_id", "gallery_faces", ["image_id"])


def _alter_in_place() -> None:
    inspector = sa.inspect(op.get_bind())
    for unique in inspector.get_unique_constraints("people"):
        if unique["column_names"] == ["name"]:
            op.drop_constraint(unique["name"], "people", type_="unique")
    op.add_column("people", sa.Column("collection_id", sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE people SET collection_id = 1"))
    op.alter_column("people", "collection_id", nullable=False)
    op.create_foreign_key(
        "fk_people_collection_id", "people", "collections", ["collection_id"], ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint("uq_people_collection_name", "people", ["collection_id", "name"])
    op.add_column("gallery_faces", sa.Column("public_id", sa.String(length=36), nullable=True))
    op.execute(sa.text("UPDATE gallery_faces SET public_id = CAST(id AS VARCHAR(36))"))
    op.alter_column("gallery_faces", "public_id", nullable=False)
    op.create_unique_constraint("uq_gallery_faces_public_id", "gallery_faces", ["public_id"])
    for column in _new_face_columns():
        op.add_column("gallery_faces", column)
    _indexes()
    # The default collection's row was inserted with an explicit id: move the sequence on.
    op.execute(
        sa.text(
            "SELECT setval(pg_get_serial_sequence('collections', 'id'), "
            "(SELECT MAX(id) FROM collections))"
        )
    )


def _rebuild_sqlite() -> None:
    # Copies first, then drops children before parents: no drop deletes a referring row.
    for table in ("people", "gallery_faces", "face_descriptors"):
        op.execute(sa.text(f"CREATE TABLE _0004_{table} AS SELECT * FROM {table}"))
    for table in ("face_descriptors", "gallery_faces", "people"):
        op.drop_table(table)
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "name", name="uq_people_collection_name"),
    )
    op.create_table(
        "gallery_faces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("aligned_png", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_new_face_columns(),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id", name="uq_gallery_faces_public_id"),
    )
    op.create_index("ix_gallery_faces_person_id", "gallery_faces", ["person_id"])
    op.create_table(
        "face_descriptors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["face_id"], ["gallery_faces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("face_id", "model"),
    )
    op.create_index("ix_face_descriptors_face_id", "face_descriptors", ["face_id"])
    op.create_index("ix_face_descriptors_model", "face_descriptors", ["model"])
    _indexes()
    faces = ", ".join(FACE_COLUMNS)
    op.execute(
        sa.text(
            "INSERT INTO people (id, collection_id, name, created_at) "
            "SELECT id, 1, name, created_at FROM _0004_people"
        )
    )
    op.execute(
        sa.text(
            f"INSERT INTO gallery_faces (public_id, {faces}) "
            f"SELECT CAST(id AS TEXT), {faces} FROM _0004_gallery_faces"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO face_descriptors (id, face_id, model, vector) "
            "SELECT id, face_id, model, vector FROM _0004_face_descriptors"
        )
    )
    for table in ("people", "gallery_faces", "face_descriptors"):
        op.drop_table(f"_0004_{table}")


def downgrade() -> None:
    raise NotImplementedError("0004 is not undone: collections other than the default and "
                              "UUID face ids have no place in the schema before it")
