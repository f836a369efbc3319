"""setup.py's pins that keep builds reproducible."""

import ast
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def extras() -> dict[str, list[str]]:
    tree = ast.parse(SETUP.read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXTRAS" for t in node.targets)
    ]
    return ast.literal_eval(value)


def test_ruff_is_pinned_to_one_minor_release():
    (spec,) = [Requirement(r).specifier for r in extras()["dev"] if Requirement(r).name == "ruff"]
    lowest = min(Version(s.version) for s in spec if s.operator == ">=")
    assert lowest in spec
    assert Version(f"{lowest.major}.{lowest.minor}.99") in spec
    # A new minor release (new rules, new formatting) cannot reach a branch build unasked.
    assert Version(f"{lowest.major}.{lowest.minor + 1}.0") not in spec
