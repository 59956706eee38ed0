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


class NoConfigFile(Exception):
    """A command that only makes sense with the operator's lists was run without any config file."""


@dataclass
class App:
    config_path: str | None = None
    database_url: str | None = None
    _config: Config | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    # The SQLite file this process created (None when it was there already): a command that fails
    # before storing anything removes it again rather than leave an empty base behind.
    created_database: Path | None = field(default=None, repr=False)
    # Lists this process syncs at once (`syncd sync --jobs`), when not the config's sync.jobs:
    # the engine's pool is sized for them. Set before the engine is first used.
    list_jobs: int | None = None

    @property
    def config_file(self) -> str | None:
        """The config file in use: the one given (--config, SYNCD_CONFIG), else ./syncd.yaml when
        present, else None (built-in defaults)."""
        if self.config_path is not None:
            return self.config_path
        return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None

    @property
    def config(self) -> Config:
        """The config file given (or ./syncd.yaml when present); built-in defaults otherwise."""
        if self._config is None:
            path = self.config_file
            self._config = load_config(path) if path else Config(version=1)
        return self._config

    def require_config_file(self) -> Config:
        """The config, refusing the built-in defaults: a command about the operator's lists
        says where it looked rather than do nothing."""
        if self.config_file is None:
            raise NoConfigFile(
                f"no config file: neither --config nor SYNCD_CONFIG is set, and there is no "
                f"{Path(DEFAULT_CONFIG).resolve()}; write one (see config/example.yaml) and pass "
                "--config FILE"
            )
        return self.config

    @property
    def url(self) -> str:
        return self.database_url or os.environ.get("SYNCD_DATABASE_URL") or self.config.database

    def new_engine(self) -> Engine:
        """An engine on the master base with the config's ``database_timeouts``, its pool sized
        for the lists synced at once."""
        return db.make_engine(
            self.url,
            timeouts=self.config.database_timeouts.seconds(),
            list_jobs=self.list_jobs or self.config.sync.jobs,
        )

    @property
    def engine(self) -> Engine:
        """The master base, migrated on first use when it is the embedded SQLite file."""
        if self._engine is None:
            engine = self.new_engine()
            if engine.dialect.name == "sqlite":
                file = db.sqlite_file(engine)
                if file is not None and not file.exists():
                    self.created_database = file
                db.upgrade(engine)
            elif db.current_revision(engine) != db.head_revision():
                raise SchemaOutdated("the database schema is not up to date: run 'syncd db upgrade' first")
            self._engine = engine
        return self._engine

    def discard_unused_database(self) -> None:
        """Remove the SQLite file this process created if nothing was stored in it: a command
        that failed before writing leaves no empty base behind."""
        if self.created_database is None or self._engine is None:
            return
        if db.holds_no_data(self._engine):
            db.remove_sqlite_file(self._engine)
            self._engine = self.created_database = None


__all__ = ["App", "ConfigError", "NoConfigFile", "SchemaOutdated"]
