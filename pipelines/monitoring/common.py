"""What the analyzers share: the baseline error and the number and JSON conventions of the files."""

from __future__ import annotations

import json
import math
from typing import Any

from pipelines.errors import ConfigError


class BaselineError(ConfigError):
    """A baseline or monitoring input is missing or not in Model Monitor's format; the message
    names the file and the field."""


def stat(value: float) -> float:
    # 12 significant digits: the same figure whichever order chunks were summed in.
    return float(f"{float(value):.12g}")


def percent(share: float) -> str:
    """A share as Model Monitor prints it in a violation: ``99.71751412429379%``, ``100.0%``."""
    return f"{float(share) * 100!r}%"


def to_json(document: dict) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def load_json(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BaselineError(f"{source}: not valid JSON ({err})") from None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
