"""README says no more than docs/RESULTS.md: every number of its headline table is on that page, and
every verdict it gives a conclusion is the verdict the page rules."""

import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
RESULTS = (REPO / "docs" / "RESULTS.md").read_text()


def found_section() -> str:
    return README[README.index("## What it found") : README.index("## The two commands")]


def page_verdicts() -> dict[int, str]:
    """Conclusion number -> its verdict, as RESULTS.md writes '**k. claim** — *verdict.*'."""
    return {int(k): v for k, v in re.findall(r"^\*\*(\d)\. .*?\*\* — \*(.+?)\.\*", RESULTS, re.M)}


def test_every_verdict_readme_gives_is_the_pages():
    verdicts = page_verdicts()
    assert len(verdicts) == 4  # the page's four conclusions are read
    said = dict(re.findall(r"(\d)\. \*(.+?)\*", found_section().replace("\n", " ")))
    assert {int(k): v for k, v in said.items()} == verdicts


def test_every_number_of_the_headline_table_is_on_the_page():
    """Each number README's table quotes is one of the page's, as a percentage or a fraction, rounded to
    the decimals README shows (99.39 is the page's 0.9939; 2.0 its 1.97%)."""
    rows = [line for line in found_section().splitlines() if line.startswith("| ") and "---" not in line]
    ours = [line.split(" | ")[1] for line in rows[1:]]  # the mnist_probe column
    quoted = [n for cell in ours for n in re.findall(r"\d+\.\d+", cell)]
    assert len(quoted) >= 15  # the table is read
    on_page = [float(n) for n in re.findall(r"(?<![\d.])\d+\.\d+", RESULTS)]

    def there(number: str) -> bool:
        decimals, value = len(number.split(".")[1]), float(number)
        return any(round(y, decimals) == value or round(100 * y, decimals) == value for y in on_page)

    assert [n for n in quoted if not there(n)] == []
