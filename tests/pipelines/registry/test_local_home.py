"""``local_home()``: where the local registry lives (kept with the registry tests that use it)."""

import stat

import pytest

from pipelines.errors import ConfigError
from pipelines.local_home import local_home


def test_mlops_local_home_wins_and_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "a" / "home"))
    home = local_home()
    assert home == tmp_path / "a" / "home"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_without_it_the_home_is_under_the_users_local_share(tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_LOCAL_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_home() == tmp_path / ".local" / "share" / "sagemaker-mlops-template"
    assert local_home().is_dir()


def test_an_empty_variable_counts_as_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_home() == tmp_path / ".local" / "share" / "sagemaker-mlops-template"


def test_a_file_in_the_way_is_a_config_error_naming_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "file"))
    with pytest.raises(ConfigError, match=r"\$MLOPS_LOCAL_HOME '.*file' exists and is not a directory"):
        local_home()
