"""`lbi view`: the HTML reports of real eval and synth output folders, opened in headless
Chromium (the DOM is checked, and a screenshot of each is written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval import _config as eval_config
from test_eval import copy_first_example, dataset  # noqa: F401  (a fixture)
from test_synth import _config as synth_config
from test_synth import _scripted_factory

from lbi.agent.scripted import ScriptedLLM
from lbi.envs.web.browser import chromium_path
from lbi.eval.harness import Evaluation
from lbi.synth.pipeline import Synthesis


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _view(folder: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "lbi.cli", "view", str(folder)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "report" / "index.html"


def test_eval_report_shows_rows_outcomes_filters_and_each_episode(tmp_path, dataset, browser):  # noqa: F811
    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, name=config.model, budget=budget)

    config = eval_config(tmp_path, dataset)
    results = Evaluation(config, make_model=make_model).run()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(_view(config.output_dir).as_uri())

    assert page.locator("table.results tr.row").count() == 3
    cells = page.locator("table.results tr.row").first.locator("td")
    assert cells.nth(0).inner_text() == "zero-shot" and "(0/2)" in cells.nth(1).inner_text()
    assert page.locator("tr.task").count() == len(results["tasks"]) == 2
    page.select_option("#difficulty", "extra")
    assert page.locator("#shown").inner_text() == "1"
    assert page.locator("tr.task:not([hidden])").count() == 1
    page.select_option("#difficulty", "")
    page.check("#disagree")  # only spider-1017 is solved by one row (LbI-ICL) and not the others
    assert page.locator("tr.task:not([hidden]) code").all_inner_texts() == ["spider-1017"]
    page.screenshot(path=str(tmp_path / "eval.png"))

    page.locator("tr.task:not([hidden]) td.solved a").click()
    episode = json.loads((config.output_dir / "episodes/LbI-ICL/spider-1017.json").read_text())
    assert page.locator("li.step").count() == len(episode["steps"])
    retrieval = page.locator("li.step").first.locator("details.retrieval")
    assert "count dogs of female students" in retrieval.locator("summary").inner_text()
    # The examples the agent was shown, as it saw them, not only their ids.
    assert "### Example: Count the dogs kept by girls." in retrieval.inner_text()
    assert "solved" in page.locator("p.outcome").inner_text()
    page.screenshot(path=str(tmp_path / "episode.png"), full_page=True)
    assert (tmp_path / "episode.png").stat().st_size > 10_000


def test_synth_report_shows_stages_rejects_votes_and_the_span_in_its_trajectory(tmp_path,
                                                                               browser):
    config = synth_config(tmp_path)
    Synthesis(config, make_model=_scripted_factory([])).run()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(_view(config.output_dir).as_uri())

    stats = json.loads((config.output_dir / "stats.json").read_text())["stages"]
    assert page.locator("table.stages tr").count() == 1 + len(stats)
    rejects = dict(row.split("\t") for row in
                   page.locator("table.rejects tr").all_inner_texts()[1:])
    assert rejects == {"filter: committee": str(stats["filter"]["rejected_committee"])}
    assert page.locator("table.examples tr").count() == 1 + 24
    assert page.locator("details.document").count() == 3
    page.screenshot(path=str(tmp_path / "synth.png"))

    page.locator("table.examples tr.failed a").first.click()  # a summary, rejected
    assert "rejected by the committee" in page.locator("p.decision").inner_text()
    assert page.locator("table.votes td").nth(3).inner_text() == "too literal"
    highlighted = page.locator("li.step.in-span").count()
    start, end = (int(n) for n in
                  page.locator("dd", has_text="steps ").inner_text().split()[1].split("–"))
    assert highlighted == end - start + 1 and page.locator("li.step").count() == 3


def test_a_folder_that_is_no_output_gets_one_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lbi.cli", "view", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps lines
    assert result.returncode == 1 and "is neither an `lbi eval` output folder" in output
    assert "Traceback" not in output
