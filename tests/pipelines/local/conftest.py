"""Fixtures for the local runner's tests: the hand-written definitions under ``fixtures/``."""

from pathlib import Path

import pytest

from pipelines.local import sandbox
from pipelines.local.definition import parse_definition

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def load_definition():
    """Parse a fixture by file name, with the file name as the source in messages."""

    def load(name: str):
        return parse_definition((FIXTURES / name).read_text(), name)

    return load


@pytest.fixture(autouse=True)
def _detect_isolation_per_test():
    """Each test sees the isolation its own environment asks for, not one an earlier test forced."""
    sandbox.support.cache_clear()
    yield
    sandbox.support.cache_clear()


@pytest.fixture(params=["namespace", "rewrite"])
def isolation(request, monkeypatch) -> sandbox.Support:
    """Runs the test with jobs in a mount namespace, and again with /opt/ml paths rewritten."""
    if request.param == "rewrite":
        monkeypatch.setenv(sandbox.ISOLATION_VARIABLE, sandbox.Isolation.REWRITE.value)
    else:
        monkeypatch.delenv(sandbox.ISOLATION_VARIABLE, raising=False)
    sandbox.support.cache_clear()
    found = sandbox.support()
    if request.param == "namespace" and not found.namespaced:
        pytest.skip(f"no mount namespace on this machine: {found.reason}")
    return found


@pytest.fixture
def namespaced(monkeypatch) -> sandbox.Support:
    """The machine's mount-namespace isolation; the test is skipped where none can be made."""
    monkeypatch.delenv(sandbox.ISOLATION_VARIABLE, raising=False)
    sandbox.support.cache_clear()
    found = sandbox.support()
    if not found.namespaced:
        pytest.skip(f"no mount namespace on this machine: {found.reason}")
    return found
