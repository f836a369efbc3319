"""This instance and its job's hosts, from the ``resourceconfig.json`` SageMaker writes for every
instance (``/opt/ml/config/`` in a processing job, ``/opt/ml/input/config/`` in a training job):
``{"current_host": "algo-1", "hosts": ["algo-1", "algo-2"], ...}``."""

from __future__ import annotations

import json


class ResourceConfigError(ValueError):
    """A resource config that does not describe this instance; the message is one line."""


def parse(text: str) -> tuple[str, list[str]]:
    """``(current host, hosts as listed)``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResourceConfigError(f"resource config is not valid JSON: {err.msg}") from None
    hosts = obj.get("hosts") if isinstance(obj, dict) else None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ResourceConfigError("resource config has no 'hosts' list of host names")
    if len(set(hosts)) != len(hosts):
        raise ResourceConfigError(f"resource config names a host more than once: {', '.join(hosts)}")
    current = obj.get("current_host")
    if current not in hosts:
        raise ResourceConfigError(
            f"resource config does not name this instance: current_host {current!r} is not one of "
            f"its hosts ({', '.join(hosts)})"
        )
    return current, hosts
