"""The report and the model card as a person sees them: opened in headless Chromium (Debian's
package, installed by .ci/run). A console message, a blank page, a missing plot or a missing step
fails; each page's screenshot is kept in build/test-artifacts/."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import execution_fixture
import pytest
from PIL import Image

from pipelines.registry import cli as registry_cli
from pipelines.report.build import local_report

ARTIFACTS = Path(__file__).resolve().parents[3] / "build" / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    return found


def open_page(page: Path, screenshot: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console messages) and a full-width screenshot of ``page``."""
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
    dumped = subprocess.run(
        [*command, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *command,
            "--window-size=1280,2400",
            "--hide-scrollbars",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    return dumped.stdout, console


def check_page(
    dom: str, console: list[str], screenshot: Path, plots: set[str], steps: set[str] = frozenset()
):
    assert console == [], console
    with Image.open(screenshot) as image:
        # Full resolution, anything not white: downsampling averaged thin text into the background, and
        # a sparse but complete report read as under 2 %. A drawn report or card is 5-10 %, blank 0.
        histogram = image.convert("L").histogram()
        inked = sum(histogram[:250]) / sum(histogram)
    assert inked > 0.01, f"the page looks blank ({inked:.1%} of it drawn)"
    drawn = set()
    for plot, body in re.findall(r'<svg class="plot" data-plot="([^"]+)".*?>(.*?)</svg>', dom, re.S):
        if re.search(r"<(polyline|circle|rect|path)\b", body):
            drawn.add(plot)
    assert plots <= drawn, f"plots missing or empty: {sorted(plots - drawn)}"
    shown = set(re.findall(r'data-step="([^"]+)"', dom))
    assert steps <= shown, f"steps missing from the graph: {sorted(steps - shown)}"


def test_the_report_opens_in_chromium_with_every_plot_and_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    built = execution_fixture.build(tmp_path)
    page = local_report(built.execution_id, home=tmp_path)
    screenshot = ARTIFACTS / "report.png"
    dom, console = open_page(page, screenshot, tmp_path / "profile")
    check_page(
        dom,
        console,
        screenshot,
        {"dag", "tuning", "roc", "pr", "confusion", "calibration", "importance"},
        set(execution_fixture.STEP_NAMES),
    )


def test_the_model_card_opens_in_chromium_with_its_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    execution_fixture.build(tmp_path)
    assert (
        registry_cli.main(["card", "ChurnModelPackageGroup", "1", "--output-dir", str(tmp_path / "cards")])
        == 0
    )
    screenshot = ARTIFACTS / "model-card.png"
    dom, console = open_page(
        tmp_path / "cards" / "ChurnModelPackageGroup-1.html", screenshot, tmp_path / "profile"
    )
    check_page(dom, console, screenshot, {"roc", "confusion"})


def test_the_checks_catch_a_console_error_a_blank_page_and_a_missing_plot(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<html><body><svg class="plot" data-plot="roc"></svg>'
        '<script>throw new Error("broken page")</script></body></html>'
    )
    dom, console = open_page(broken, tmp_path / "broken.png", tmp_path / "profile")
    assert any("broken page" in line for line in console)
    with pytest.raises(AssertionError, match="blank"):
        check_page(dom, [], tmp_path / "broken.png", set())
    inked = tmp_path / "inked.png"
    Image.new("L", (100, 100), 0).save(inked)
    with pytest.raises(AssertionError, match="plots missing or empty: \\['roc'\\]"):
        check_page(dom, [], inked, {"roc"})
    with pytest.raises(AssertionError, match="steps missing from the graph: \\['Evaluate'\\]"):
        check_page(dom, [], inked, set(), {"Evaluate"})


def test_the_report_fits_a_window_narrower_than_its_step_graph(tmp_path, monkeypatch):
    """Reproduction: the churn pipeline's nine steps drew a graph wider than the page, which then
    scrolled sideways; plots now shrink to the page's width."""
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    built = execution_fixture.build(tmp_path)
    page = local_report(built.execution_id, home=tmp_path).read_text()
    graph_width = int(re.search(r'<svg class="plot" data-plot="dag"[^>]* width="(\d+)"', page).group(1))
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace(
            "</body>",
            "<script>const graph = document.querySelector('svg[data-plot=dag]').getBoundingClientRect();"
            "document.title = 'overflow=' + Math.max(0, Math.ceil(graph.right - document.body."
            "getBoundingClientRect().right))</script></body>",
        )
    )
    window = graph_width // 2
    dumped = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={window},800",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    assert re.search(r"<title>overflow=(-?\d+)</title>", dumped.stdout).group(1) == "0"
