"""The project and bootstrap templates, as written and as CloudFormation would resolve them."""

import pytest
from seed_support import ACCOUNT, PROJECT, REGION, STAGING

from seed_code import templates


@pytest.fixture(scope="session")
def project_source():
    return templates.load(templates.PROJECT)


@pytest.fixture(scope="session")
def bootstrap_source():
    return templates.load(templates.BOOTSTRAP)


@pytest.fixture(scope="session")
def render_project(project_source):
    def render(**overrides):
        return templates.render(project_source, {**PROJECT, **overrides}, account=ACCOUNT, region=REGION)

    return render


@pytest.fixture(scope="session")
def project(render_project):
    """The project with its defaults: CodeCommit, a weekly schedule, the default data prefix."""
    return render_project()["Resources"]


@pytest.fixture(scope="session")
def bootstrap(bootstrap_source):
    """The bootstrap template as deployed in the staging account."""
    rendered = templates.render(
        bootstrap_source, {"ToolingAccountId": ACCOUNT}, account=STAGING, region=REGION
    )
    return rendered["Resources"]
