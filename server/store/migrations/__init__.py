"""Alembic migrations of the database schema, shipped inside the package so that an installed
server upgrades its own database (`server.store.db.init_db`). A schema change is a new revision in
`versions/`: `alembic -c server/store/migrations/alembic.ini revision --autogenerate -m "..."`."""
