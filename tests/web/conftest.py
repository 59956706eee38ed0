"""Fixtures for the web app: its config, a TestClient, and the app on a real loopback server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from webfixtures import make_config

from connectors.simulators.harness import ThreadedServer
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


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    """A page of Debian's headless Chromium (JavaScript off, English) and the console's messages."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed here")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(locale="en-GB", java_script_enabled=False)
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            yield page, console
        finally:
            browser.close()
