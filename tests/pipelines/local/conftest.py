"""Fixtures for the local runner's tests: the hand-written definitions under ``fixtures/``."""

from pathlib import Path

import pytest

from pipelines.local.definition import parse_definition

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def load_definition():
    """Parse a fixture by file name, with the file name as the source in messages."""

    def load(name: str):
        return parse_definition((FIXTURES / name).read_text(), name)

    return load
