"""The registry's argument checks live in the base class: a backend sees only checked arguments."""

import pytest

from pipelines.errors import ConfigError
from pipelines.registry.base import ModelRegistry


def _recorded(name):
    def method(self, *args, **kwargs):
        self.calls.append(name)

    return method


class RecordingBackend(ModelRegistry):
    """A backend that records every call that reaches its own part and answers nothing."""

    def __init__(self):
        self.calls = []

    def list_groups(self):
        return []

    _create_group = _recorded("_create_group")
    _get_group = _recorded("_get_group")
    _get_version = _recorded("_get_version")
    _get_by_arn = _recorded("_get_by_arn")
    _list_versions = _recorded("_list_versions")
    _update_approval = _recorded("_update_approval")
    _approval_history = _recorded("_approval_history")
    _update_metadata = _recorded("_update_metadata")
    _register = _recorded("_register")


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.create_group("bad name!"),
        lambda r: r.get_group(""),
        lambda r: r.get_version("Group", 0),
        lambda r: r.get_by_arn("arn:aws:s3:::not-a-package"),
        lambda r: r.list_versions("Group", approval_status="Yes"),
        lambda r: r.latest_approved("bad name!"),
        lambda r: r.update_approval("Group", 1, "Yes", by="me"),
        lambda r: r.approval_history("Group", -1),
        lambda r: r.update_metadata("Group", 1, {"key": "a,b"}),
        lambda r: r.register("Group", model_data_url="not-a-uri", image_uri="image"),
    ],
    ids=[
        "create_group",
        "get_group",
        "get_version",
        "get_by_arn",
        "list_versions",
        "latest_approved",
        "update_approval",
        "approval_history",
        "update_metadata",
        "register",
    ],
)
def test_bad_arguments_are_refused_before_the_backend_is_asked(call):
    backend = RecordingBackend()
    with pytest.raises(ConfigError):
        call(backend)
    assert backend.calls == []


def test_good_arguments_reach_the_backends_own_part():
    backend = RecordingBackend()
    backend.get_version("Group", 3)
    backend.update_approval("Group", 3, "Approved", by="me", reason="ok")
    assert backend.calls == ["_get_version", "_update_approval"]
