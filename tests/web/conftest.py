"""Fixtures for the web app: its config, a TestClient, and the app on a real loopback server."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from webfixtures import make_config

from connectors.simulators.server import ThreadedServer
from syncd.config import Config
from syncd.web.app import create_app


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def client(engine, config):
    with TestClient(create_app(config, engine)) as c:
        yield c


@pytest.fixture
def served(engine, config):
    """The app on a real uvicorn server on a free loopback port."""
    with ThreadedServer(create_app(config, engine)) as srv:
        yield srv
