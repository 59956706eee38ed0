"""Alembic environment: the engine comes from syncd (``syncd db upgrade`` or the tests)."""

from alembic import context
from sqlmodel import SQLModel

import syncd.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A migration may rewrite a large table: the engine's statement timeout is for the service.
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
