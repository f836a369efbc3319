"""The monitored stage every monitor test starts from (tests/helpers/monitor_support.py)."""

import shutil

import pytest
from monitor_support import EXAMPLE, World


@pytest.fixture
def world(tmp_path) -> World:
    config_dir = tmp_path / "deploy"
    shutil.copytree(EXAMPLE, config_dir)
    return World(tmp_path / "home", config_dir)
