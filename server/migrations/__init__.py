"""Alembic migrations of the database schema, shipped inside the package so that an installed
server upgrades its own database (`server.db.init_db`). A schema change is a new revision in
`versions/`: `alembic -c server/migrations/alembic.ini revision --autogenerate -m "..."`."""
