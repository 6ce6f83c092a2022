"""The HTML report: one self-contained page, parsed back to check its figures and tables."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from reasonlab.evaluation.report import build_report, write_report
from reasonlab.formats.csvio import write_rows

pytest.importorskip("matplotlib")

W = "In Alice's Wonderland, "
GRAVITY = (
    W + "the gravitational constant has been secretly changed. Here are some observations: ..."
)
NUMERAL = W + "numbers are secretly converted into a different numeral system. Some examples: ..."
GOLD = [
    {"id": "g1", "prompt": GRAVITY, "answer": "12.5"},
    {"id": "g2", "prompt": GRAVITY, "answer": "3.14"},
    {"id": "n1", "prompt": NUMERAL, "answer": "XIV"},
    {"id": "n2", "prompt": NUMERAL, "answer": "VII"},
]
OUTPUTS = [
    # g1 right twice; g2 cut off at the limit with no box; n1 right; n2 answers with markup
    {"id": "g1", "sample": 0, "output": "\\boxed{12.50}", "output_tokens": 120, "truncated": False},
    {"id": "g1", "sample": 1, "output": "\\boxed{12.5}", "output_tokens": 90, "truncated": False},
    {
        "id": "g2",
        "sample": 0,
        "output": "thinking " * 50 + "so 3",
        "output_tokens": 7680,
        "truncated": True,
    },
    {"id": "g2", "sample": 1, "output": "\\boxed{3.1}", "output_tokens": 300, "truncated": False},
    {"id": "n1", "sample": 0, "output": "\\boxed{XIV}", "output_tokens": 40, "truncated": False},
    {"id": "n1", "sample": 1, "output": "\\boxed{xiv}", "output_tokens": 41, "truncated": False},
    {
        "id": "n2",
        "sample": 0,
        "output": "<script>alert(1)</script> \\boxed{VI}",
        "output_tokens": 50,
        "truncated": False,
    },
    {"id": "n2", "sample": 1, "output": "\\boxed{VI}", "output_tokens": 52, "truncated": False},
]


class Page(HTMLParser):
    """Collects what the checks need: images, tables and their cells, headings, scripts, links."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.headings, self.external, self.scripts = [], [], [], [], 0
        self.cells: list[str] = []
        self._tag = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._tag = tag
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "table":
            self.tables.append(tag)
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            if attrs.get(name, "").startswith(("http", "//")) or tag == "link":
                self.external.append((tag, attrs))

    def handle_endtag(self, tag):
        self._tag = None

    def handle_data(self, data):
        if self._tag in ("td", "th"):
            self.cells.append(data.strip())
        if self._tag in ("h2", "h3", "h4"):
            self.headings.append(data.strip())


@pytest.fixture
def page() -> Page:
    parsed = Page()
    parsed.feed(build_report(OUTPUTS, GOLD, {"max_new_tokens": 7680, "base": "m"}, worst=1))
    return parsed


def test_figures_are_embedded_pngs(page):
    assert len(page.images) == 2  # accuracy bars, length histograms
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"


def test_self_contained_and_escaped(page):
    assert page.external == []
    assert page.scripts == 0  # the model's "<script>" output is shown as text, not run


def test_summary_table(page):
    assert len(page.tables) == 1
    cells = page.cells
    for head in ("accuracy", "pass@1", "majority", "pass@2", "no \\boxed{}", "truncated"):
        assert head in cells
    # all: sample-0 accuracy 2/4 (g1, n1); gravity: g2's cut-off output has no box (1 of 4)
    row = cells[cells.index("all") :][:11]
    assert row[:4] == ["all", "4", "2", "50.0%"]
    gravity = cells[cells.index("gravity") :][:11]
    assert gravity[8] == "25.0%" and gravity[9] == "25.0%"


def test_worst_examples_per_family(page):
    assert "Worst examples (1 per family)" in page.headings
    assert {"gravity", "numeral"} <= set(page.headings)
    # The worst gravity row is g2 (no sample right), the worst numeral row n2.
    assert "g2" in page.headings and "n2" in page.headings
    assert "g1" not in page.headings and "n1" not in page.headings


def test_write_report_reads_the_config_beside_outputs(tmp_path):
    gold = tmp_path / "gold.csv"
    write_rows(gold, GOLD, ("id", "prompt", "answer"))
    outputs = tmp_path / "run.jsonl"
    outputs.write_text("".join(json.dumps(x) + "\n" for x in OUTPUTS))
    (tmp_path / "run.config.json").write_text(json.dumps({"max_new_tokens": 64, "backend": "hf"}))
    path = write_report(outputs, gold, tmp_path / "sub" / "report.html")
    text = path.read_text()
    assert "backend: <code>hf</code>" in text and text.startswith("<!DOCTYPE html>")


def test_report_command(cli, tmp_path):
    gold = tmp_path / "gold.csv"
    write_rows(gold, GOLD, ("id", "prompt", "answer"))
    outputs = tmp_path / "run.jsonl"
    outputs.write_text("".join(json.dumps(x) + "\n" for x in OUTPUTS))
    result = cli("report", outputs, "--gold", gold, "-o", tmp_path / "r.html")
    assert "report written" in result.output
    parsed = Page()
    parsed.feed((tmp_path / "r.html").read_text())
    assert len(parsed.images) == 2


def test_no_matching_outputs_is_an_error():
    with pytest.raises(ValueError, match="nothing to report"):
        build_report([], GOLD)
