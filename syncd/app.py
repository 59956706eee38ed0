"""What every command shares: the loaded config and the master base's engine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from syncd import db
from syncd.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "syncd.yaml"


class SchemaOutdated(Exception):
    pass


@dataclass
class App:
    config_path: str | None = None
    database_url: str | None = None
    _config: Config | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The config file given (or ./syncd.yaml when present); built-in defaults otherwise."""
        if self._config is None:
            path = self.config_path
            if path is None and Path(DEFAULT_CONFIG).exists():
                path = DEFAULT_CONFIG
            self._config = load_config(path) if path else Config(version=1)
        return self._config

    @property
    def url(self) -> str:
        return self.database_url or os.environ.get("SYNCD_DATABASE_URL") or self.config.database

    def new_engine(self) -> Engine:
        """An engine on the master base with the config's ``database_timeouts``."""
        return db.make_engine(self.url, timeouts=self.config.database_timeouts.seconds())

    @property
    def engine(self) -> Engine:
        """The master base, migrated on first use when it is the embedded SQLite file."""
        if self._engine is None:
            engine = self.new_engine()
            if engine.dialect.name == "sqlite":
                db.upgrade(engine)
            elif db.current_revision(engine) != db.head_revision():
                raise SchemaOutdated("the database schema is not up to date: run 'syncd db upgrade' first")
            self._engine = engine
        return self._engine


__all__ = ["App", "ConfigError", "SchemaOutdated"]
