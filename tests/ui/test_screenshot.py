"""Screenshots keep the space between a label and its value in whatever draws the SVG.

The SVG is read the way a renderer lays it out: each `<text>` element placed at its x on the
grid, its text first put through SVG's whitespace rules. Under the default rules a renderer
strips a text element's leading and trailing spaces (librsvg counts the no-break spaces Rich
writes as spaces too); under `xml:space="preserve"` it keeps them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from textual.app import App

from nemo_tui.ui.screenshot import preserve_spaces
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from tests.ui.support import FixedSampler, make_rig, profile, settle, started

SVG = "{http://www.w3.org/2000/svg}"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"


def rendered_lines(svg: str) -> list[str]:
    """The screen's rows of text as a renderer that follows `xml:space` draws them."""
    rows: dict[float, dict[int, str]] = {}

    def walk(element: ElementTree.Element, space: str) -> None:
        space = element.get(XML_SPACE, space)
        length = element.get("textLength")
        if element.tag == f"{SVG}text" and length is not None and element.text:
            text = element.text
            # textLength is the run's width in cells times the cell width.
            cell_width = float(length) / len(text)
            if space != "preserve":
                text = text.strip()
            row = rows.setdefault(float(element.attrib["y"]), {})
            first = round(float(element.attrib["x"]) / cell_width)
            for offset, char in enumerate(text):
                row[first + offset] = char
        for child in element:
            walk(child, space)

    walk(ElementTree.fromstring(svg), "default")
    lines = []
    for _, cells in sorted(rows.items()):
        lines.append("".join(cells.get(i, " ") for i in range(max(cells) + 1)).replace("\xa0", " "))
    return lines


async def test_labels_and_values_keep_their_spaces_in_the_exported_svg(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 11, gpu_gb=8)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        panel = rig.app.screen.query_one(RecommendationPanel)
        await settle(pilot, lambda: "Context" in str(panel.render()))
        screen = "\n".join(rendered_lines(rig.app.export_screenshot()))
        # Textual's own export, drawn the same way, shows what the README's picture showed:
        # proof that the reading above is the one that ran the pairs together.
        unfixed = "\n".join(rendered_lines(App.export_screenshot(rig.app)))
    for joined in ("Why11.0 GB", "Context4,096", "nemo-tui—", "f1Help", "[x]Garbage"):
        assert joined in unfixed
    for spaced in (
        "nemo-tui — backends: ollama up",
        "Why 11.0 GB free",
        "Context 4,096 tokens",
        "Then tinyllama",
        "phi3:mini (medium tier, ollama) · fits, needs 4.0 GB",
        "[x] Garbage collection",
        "f1 Help  ^s Send",
    ):
        assert spaced in screen


def test_preserving_spaces_marks_the_root_once() -> None:
    svg = '<svg class="rich-terminal" xmlns="http://www.w3.org/2000/svg"><text>a</text></svg>'
    marked = preserve_spaces(svg)
    assert ElementTree.fromstring(marked).get(XML_SPACE) == "preserve"
    assert preserve_spaces(marked) == marked
    assert preserve_spaces("not an svg") == "not an svg"
