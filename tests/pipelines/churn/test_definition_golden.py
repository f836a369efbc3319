"""The definition is deterministic and matches the reviewed golden file.

The golden file has the account, bucket, region and code digests normalised, so editing a step
script does not churn it; a change of structure does. Regenerate after a deliberate change with
``UPDATE_GOLDEN=1 python -m pytest tests/pipelines/churn/test_definition_golden.py`` and review the diff.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ACCOUNT, BUCKET, REGION, ROLE

GOLDEN = Path(__file__).parent / "golden" / "definition.json"

BUILD = (
    "import json, sys; from pipelines.churn.pipeline import get_pipeline; "
    "sys.stdout.write(get_pipeline(**json.loads(sys.argv[1])).definition())"
)


def normalise(definition_text: str) -> str:
    text = (
        definition_text.replace(BUCKET, "<bucket>").replace(ACCOUNT, "<account>").replace(REGION, "<region>")
    )
    text = re.sub(r"\b\d{12}(?=\.dkr\.ecr\.)", "<ecr-account>", text)
    text = re.sub(r"/code/[0-9a-f]{64}/", "/code/<sha256>/", text)
    return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def build_in_subprocess(cwd: Path, extra_env: dict) -> str:
    env = {**os.environ, **extra_env}
    kwargs = json.dumps({"region": REGION, "role": ROLE, "default_bucket": BUCKET})
    done = subprocess.run(
        [sys.executable, "-c", BUILD, kwargs], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_definition_matches_the_golden_file(churn_definition_text):
    actual = normalise(churn_definition_text)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(actual)
    assert actual == GOLDEN.read_text(), "definition changed: review, then regenerate with UPDATE_GOLDEN=1"


@pytest.mark.slow
def test_same_code_and_arguments_give_a_byte_identical_definition_anywhere(tmp_path, churn_definition_text):
    # Different processes, working directories, time zones and hash seeds: nothing may leak in.
    first = build_in_subprocess(tmp_path, {"TZ": "Asia/Tokyo", "PYTHONHASHSEED": "1"})
    other = tmp_path / "elsewhere"
    other.mkdir()
    second = build_in_subprocess(other, {"TZ": "America/Lima", "PYTHONHASHSEED": "2"})
    assert first == second == churn_definition_text
