"""The contract suite checks every exchange with the simulators against the providers' published
API descriptions (see api_conformance.py): a test fails if any request or answer during it does not
conform, and the session ends with a count of what was checked, per provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_conformance import Conformance

from connectors.simulators.harness import wrapping_served_apps

CHECK = Conformance()


@pytest.fixture(scope="module", autouse=True)
def conformance() -> Iterator[Conformance]:
    # Module scope, autouse: in place before any simulator fixture of the module starts a server.
    with wrapping_served_apps(CHECK.wrap):
        yield CHECK


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    CHECK.settle()
    before = len(CHECK.mismatches)
    result = yield
    CHECK.settle()
    found = CHECK.mismatches[before:]
    if found:
        raise AssertionError(
            "exchange(s) with a simulator outside the provider's published API description:\n"
            + "\n".join(found)
        )
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = CHECK.summary()
    if lines:
        terminalreporter.section("conformance to the providers' API descriptions")
        for line in lines:
            terminalreporter.write_line(line)
