"""The pages committed under docs/ cannot drift from their generator: each is rendered again from the
results file committed beside it (docs/NAME.json, as `make pages` does), in a copy of docs/, and
must come out byte for byte as committed. A change of wording fails here until `make pages` has
written the pages it changes, in the same commit."""

from __future__ import annotations

import json
import shutil

import pytest

from mnist_probe.errors import UserError
from mnist_probe.pages.performance import PERFORMANCE_PAGE
from mnist_probe.pages.render import render
from tests.conftest import REPO

DOCS = REPO / "docs"
RESULTS_FILES = sorted(DOCS.glob("*.json"))


def test_the_data_set_page_is_committed_with_its_results_file():
    """The Fashion-MNIST page (make fashion-page) has its results file; each results file its page."""
    assert DOCS / "RESULTS-fashion-mnist.json" in RESULTS_FILES
    assert all(f.with_suffix(".md").is_file() for f in RESULTS_FILES)


@pytest.mark.parametrize("results_file", RESULTS_FILES, ids=lambda p: p.name)
def test_a_committed_page_is_its_results_file_rendered(tmp_path, results_file):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(results_file, docs)
    for figures in DOCS.glob("figures*"):  # the figures the page links, copied when it was written
        shutil.copytree(figures, docs / figures.name)
    page = render(docs / results_file.name)
    assert page == docs / results_file.with_suffix(".md").name
    committed = results_file.with_suffix(".md").read_text()
    assert page.read_text() == committed, (
        f"run `make pages` and commit {results_file.with_suffix('.md').name}"
    )
    assert all(command in committed for command in commands(json.loads(results_file.read_text())))


def commands(saved: dict) -> list[str]:
    """The commands that measured a results file's figures: each must be named on its page."""
    if saved.get("page") == PERFORMANCE_PAGE:
        runs = [
            run
            for part in saved["results"]["parts"].values()
            for run in (part["run"], *part["others"].values())
        ]
        return [run["command"] for run in runs]
    return [saved["results"]["setting"]["command"]]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "cannot read it as JSON"),
        ('{"rows": []}', "no page's results in it"),
        ("[1, 2]", "no page's"),
    ],
)
def test_a_file_that_is_no_results_file_is_refused_in_one_line(tmp_path, text, says):
    bad = tmp_path / "page.json"
    bad.write_text(text)
    with pytest.raises(UserError, match=rf"^{bad}: {says}.*give a report's page.json") as refused:
        render(bad)
    assert "\n" not in str(refused.value) and sorted(p.name for p in tmp_path.iterdir()) == ["page.json"]
