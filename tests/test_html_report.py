"""The HTML report, opened in headless Chromium: what a reviewer sees and can do with it.

The project is the one of ``tests/test_against.py`` (three prompts, two suites, a local
OpenAI-compatible server that answers "yes", or something else when the system message
says so). Here alpha regresses (its answers turn into an HTML payload that must be shown
as text, never run) and beta changes wording without changing an answer (inconclusive,
outputs identical), so the report holds both kinds of rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _browser import ARTIFACTS, Opened
from _llm_server import LLMServer
from promptlib.compare.against import AgainstReport, compare_against
from promptlib.ledger import open_project
from promptlib.reports import to_json
from promptlib.reports.html import against_html, charts_available
from promptlib.settings import Settings
from test_against import (
    MAIN_ROWS,
    change_alpha,
    cli,
    make_project,
    prompt_file,
    write_prompt,
)

PAYLOAD = '<script>alert("from the model")</script><img src=x onerror=alert(2)> no'


def answer(messages: list[dict[str, Any]]) -> str:
    return PAYLOAD if "[bad]" in messages[0]["content"] else "yes"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A released project with alpha regressed and beta reworded, and its report."""
    with LLMServer(answer=answer) as server:
        root = make_project(tmp_path_factory.mktemp("html") / "project", server.base_url)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DEMO_API_KEY", "sk-test")
            code, out, err = cli(root, "release")
            assert code == 0, out + err
            change_alpha(root, "[bad] Answer yes.")
            write_prompt(
                root, "beta", prompt_file("beta", "Answer yes, please.").replace("1.0.0", "1.1.0")
            )
            settings = Settings.resolve(root)
            report = compare_against(settings, "v1.0.0", ledger=open_project(settings))
        yield root, report


def test_everything_from_the_model_is_text(project: tuple[Path, AgainstReport]) -> None:
    _, report = project
    page = against_html(report, charts=False)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;from the model&quot;)&lt;/script&gt;" in page
    # Every script element is ours: the two of the page (and no library without charts).
    assert page.count("<script") == 1


def test_the_header_follows_the_exit_code(project: tuple[Path, AgainstReport]) -> None:
    _, report = project
    assert report.failed  # alpha regressed in both suites
    page = against_html(report, charts=False)
    assert '<h1 id="status" data-passed="false"><span class="badge fail">failed</span>' in page
    assert "2 regression(s)" in page


def test_the_report_in_a_browser(browser: Any, project: tuple[Path, AgainstReport]) -> None:
    root, report = project
    path = root / "report.html"
    path.write_text(against_html(report), encoding="utf-8")
    comparisons = to_json(report)["comparisons"]
    opened = Opened(browser, path)
    page = opened.page
    try:
        rows = page.locator("#verdicts tbody tr")
        assert rows.count() == len(comparisons) == 3  # alpha in two suites, beta in one
        # Filter by verdict: only the regressed rows stay visible.
        page.select_option("#filter-verdict", "regressed")
        visible = page.locator("#verdicts tbody tr:not([hidden])")
        regressed = [c for c in comparisons if c["verdict"] == "regressed"]
        assert visible.count() == len(regressed) == 2
        assert {visible.nth(i).get_attribute("data-verdict") for i in range(2)} == {"regressed"}
        assert page.locator("#shown").inner_text() == "2 of 3 shown"
        page.select_option("#filter-verdict", "")
        page.fill("#filter-prompt", "beta")
        assert page.locator("#verdicts tbody tr:not([hidden])").count() == 1
        page.fill("#filter-prompt", "")
        # Sorting by Δ puts the regressions (-1) first.
        page.locator("#verdicts th", has_text="Δ").click()
        first = page.locator("#verdicts tbody tr").first
        assert first.get_attribute("data-verdict") == "regressed"
        # A flipped example shows both answers; the payload is text on the page.
        example = page.locator("#prompt-demo\\.alpha .example").first
        assert example.locator("pre.baseline").inner_text() == "yes"
        assert PAYLOAD in example.locator("pre.candidate").inner_text()
        assert "right → wrong" in example.inner_text()
        beta = page.locator("#prompt-demo\\.beta").inner_text()
        assert f"Outputs identical on all {MAIN_ROWS} examples" in beta
        if charts_available():
            page.wait_for_selector("div.chart svg")
            assert page.locator("div.chart svg").count() >= 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"))
        assert (ARTIFACTS / "report.png").stat().st_size > 10_000
        assert opened.errors == []
        assert opened.dialogs == []  # no alert() from the model's answers ever ran
        assert all(url.startswith(("file:", "data:", "about:")) for url in opened.requests)
    finally:
        opened.close()


def test_json_and_html_agree_on_the_verdicts(project: tuple[Path, AgainstReport]) -> None:
    _, report = project
    page = against_html(report, charts=False)
    for c in to_json(report)["comparisons"]:
        assert f'data-verdict="{c["verdict"]}" data-prompt="{c["prompt"]}"' in page
    assert json.dumps(to_json(report)["rule"]["family"]) == "3"
