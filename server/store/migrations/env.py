"""Alembic's environment: the server passes its own connection (see server.store.db.upgrade);
the `alembic` command line gets an engine for the configured database."""

from __future__ import annotations

from alembic import context

from server.store.db import Base, make_engine

config = context.config


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _configure_and_run(connection)
else:
    from server.settings import get_settings

    engine = make_engine(get_settings().resolved_database_url)
    with engine.connect() as own_connection:
        _configure_and_run(own_connection)
