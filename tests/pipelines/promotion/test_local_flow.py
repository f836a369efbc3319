"""The whole flow locally, end to end, through the CLIs a user types: the pipeline registers two
versions; they are approved and promoted dev -> staging -> (manual gate) -> prod with real loopback
endpoints; rejecting the version in prod rolls every stage back to the previous one. Each test works
on its own copy of the registered home, so each passes alone and in any order."""

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from support import free_port, invoke

from pipelines import run_pipeline
from pipelines.promotion import cli as promote
from pipelines.registry import cli as registry_cli

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CHURN_CSV = Path(__file__).resolve().parents[3] / "data" / "churn" / "churn.csv"
GROUP = "ChurnModelPackageGroup"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A local home in which the pipeline registered two versions; tests work on copies of it."""
    home = tmp_path_factory.mktemp("registered")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLOPS_LOCAL_HOME", str(home))
    try:
        for _ in range(2):
            argv = ["--local", "--module-name", "pipelines.churn.pipeline", "--parameters", "MaxTuningJobs=2"]
            assert run_pipeline.main(argv) == 0
    finally:
        patch.undo()
    return home


@pytest.fixture
def world(registered, tmp_path, monkeypatch):
    """This test's own copy of the registered home, and the stage configs on free ports; every
    endpoint the test started is stopped after it."""
    home = tmp_path / "home"
    shutil.copytree(registered, home)
    config = tmp_path / "deploy"
    shutil.copytree(DEPLOY, config)
    for path in (config / "stages").glob("*.json"):
        document = json.loads(path.read_text())
        document["endpoint"]["local_port"] = free_port()
        path.write_text(json.dumps(document))
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(home))
    yield home, config / "promotion.json"
    from pipelines.serving.endpoints import LocalEndpoints

    for namespace in (home / "accounts").glob("*"):
        endpoints = LocalEndpoints(namespace)
        for endpoint in endpoints.list():
            endpoints.stop(endpoint.name)


@pytest.fixture
def cli(world, capsys):
    home, config = world

    def run(main, *argv):
        if main is promote.main:
            argv = ("--config", str(config), *argv)
        return invoke(main, argv, capsys)

    return run


def promote_everywhere(cli, version):
    """Approve ``version`` and take it through dev, staging, prod's manual gate and prod."""
    assert cli(registry_cli.main, "approve", GROUP, version, "--reason", "reviewed")[0] == 0
    for stage in ("dev", "staging"):
        code, _, err = cli(promote.main, "deploy", "--stage", stage, "--version", version)
        assert code == 0, err
    assert cli(promote.main, "approve", "--stage", "prod", "--version", version, "--by", "alice")[0] == 0
    code, _, err = cli(promote.main, "deploy", "--stage", "prod", "--version", version)
    assert code == 0, err


def status(cli):
    code, out, err = cli(promote.main, "status")
    assert code == 0, err
    return json.loads(out)


def prod_url(world):
    _, config = world
    port = json.loads((config.parent / "stages" / "prod.json").read_text())["endpoint"]["local_port"]
    return f"http://127.0.0.1:{port}/invocations"


def test_a_pending_version_cannot_be_promoted(cli):
    code, _, err = cli(promote.main, "deploy", "--stage", "dev", "--version", "1")
    assert code == 1
    assert "is PendingManualApproval, not Approved" in err


def test_each_version_goes_through_dev_staging_the_manual_gate_and_prod(cli, world):
    for version in ("1", "2"):
        assert cli(registry_cli.main, "approve", GROUP, version, "--reason", "reviewed")[0] == 0
        code, out, err = cli(promote.main, "deploy", "--stage", "dev", "--version", version)
        assert code == 0, err
        assert "dev: smoke tests passed: 20 rows" in out
        assert cli(promote.main, "deploy", "--stage", "staging", "--version", version)[0] == 0

        code, _, err = cli(promote.main, "deploy", "--stage", "prod", "--version", version)
        assert code == 1 and f"promote approve --stage prod --version {version}" in err
        assert cli(promote.main, "approve", "--stage", "prod", "--version", version, "--by", "alice")[0] == 0
        assert cli(promote.main, "deploy", "--stage", "prod", "--version", version)[0] == 0
        assert status(cli) == {"dev": int(version), "staging": int(version), "prod": int(version)}

    # What the README's curl does: a row from `promote sample` in, the evaluated model's prediction out.
    code, out, err = cli(promote.main, "sample", "--rows", "2")
    assert code == 0, err
    rows = out.splitlines()
    assert len(rows) == 2 and all(len(row.split(",")) > 10 for row in rows)
    samples = [json.loads(p.read_text()) for p in Path(world[0], "s3").rglob("sample-requests.json")]
    # Each run's sample; prod serves the latest, and a row's prediction is the one its model gave.
    expected: dict[str, list[float]] = {}
    for sample in samples:
        for row, prediction in zip(sample["rows"], sample["predictions"], strict=True):
            expected.setdefault(row, []).append(prediction)
    request = urllib.request.Request(
        prod_url(world), data=rows[0].encode(), headers={"Content-Type": "text/csv"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        answer = float(response.read())
        assert any(abs(answer - prediction) < 1e-6 for prediction in expected[rows[0]])
    assert not all(_is_number(cell) for cell in rows[0].split(","))  # a raw record, not an encoded row
    code, out, err = cli(promote.main, "sample", "--header")
    assert code == 0, err
    assert out.splitlines() == [header_of(CHURN_CSV), rows[0]]

    # A customer as the table holds them: a row of churn.csv, its label dropped, with and without the
    # header row, and as a JSON record.
    header, first = CHURN_CSV.read_text().splitlines()[:2]
    names, cells = header.split(",")[:-1], first.split(",")[:-1]
    bodies = [
        ("text/csv", f"{','.join(names)}\n{','.join(cells)}"),
        ("text/csv", ",".join(cells)),
        ("application/json", json.dumps(dict(zip(names, [_typed(c) for c in cells], strict=True)))),
    ]
    answers = set()
    for content_type, body in bodies:
        request = urllib.request.Request(
            prod_url(world), data=body.encode(), headers={"Content-Type": content_type, "Accept": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            answers.add(float(response.read()))
    assert len(answers) == 1 and 0 < answers.pop() < 1


def header_of(table: Path) -> str:
    """The table's header row without the label (the last column)."""
    return table.read_text().splitlines()[0].rsplit(",", 1)[0]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _typed(cell: str):
    return float(cell) if _is_number(cell) else cell


def test_where_answers_for_each_version(cli):
    promote_everywhere(cli, "1")
    promote_everywhere(cli, "2")

    code, out, _ = cli(promote.main, "where", "--version", "1")
    assert code == 0
    where = json.loads(out)
    assert set(where) == {"dev", "staging", "prod"}
    assert all(stage["serving"] == "no" and "retired-at" in stage for stage in where.values())
    assert json.loads(cli(promote.main, "where", "--version", "2")[1])["prod"]["serving"] == "yes"


def test_rejecting_the_prod_version_rolls_every_stage_back_to_the_previous_one(cli, world):
    promote_everywhere(cli, "1")
    promote_everywhere(cli, "2")

    code, out, err = cli(promote.main, "reject", "--version", "2", "--reason", "complaints")

    assert code == 0, err
    assert status(cli) == {"dev": 1, "staging": 1, "prod": 1}
    assert "rolling prod back to ChurnModelPackageGroup/1" in out
    code, out, _ = cli(registry_cli.main, "describe", GROUP, "2")
    assert json.loads(out)["ModelApprovalStatus"] == "Rejected"
    with urllib.request.urlopen(
        urllib.request.Request(prod_url(world).replace("invocations", "ping")), timeout=10
    ) as response:
        assert response.status == 200


def test_undeploying_a_stage_stops_its_endpoint_and_records_it(cli, world):
    promote_everywhere(cli, "1")
    port = json.loads((world[1].parent / "stages" / "dev.json").read_text())["endpoint"]["local_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
        assert response.status == 200

    code, out, err = cli(promote.main, "undeploy", "--stage", "dev")
    assert code == 0, err
    assert status(cli)["dev"] is None and status(cli)["prod"] == 1
    assert "retired-at" in json.loads(cli(promote.main, "where", "--version", "1")[1])["dev"]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
