"""SVG screenshots of the dashboard that keep their spaces in every SVG renderer.

Rich's SVG export (behind Textual's `App.export_screenshot`) writes one `<text>` element per
run of one style, placed by its x position, with each space written as a no-break space. Where a
run starts with a space, such as the space between a dim label and its value ("Why 11.0 GB"),
a renderer that applies SVG's default whitespace rules strips it and draws the rest of the run
from the run's x position: the value slides left onto the label ("Why11.0 GB", "f1Help",
"[x]Garbage collection"). librsvg, behind many image viewers and converters, does this.

A terminal screen is a grid in which every space counts, so the screenshot says so on its root
element with `xml:space="preserve"`, which every SVG renderer honours.
"""

from __future__ import annotations

SVG_ROOT_TAG = "<svg "
"""How the exported document's root element starts."""

PRESERVE_SPACES = 'xml:space="preserve"'
"""The attribute that tells a renderer to draw every space of every text element as written."""


def preserve_spaces(svg: str) -> str:
    """The SVG with `xml:space="preserve"` on its root element, so no renderer drops a space.

    Args:
        svg: An SVG document as Rich exports it.

    Returns:
        The same document with the attribute added; unchanged if it already has it or has no
        root element to add it to.
    """
    root = svg.find(SVG_ROOT_TAG)
    if root == -1 or PRESERVE_SPACES in svg[root : svg.find(">", root)]:
        return svg
    start = root + len(SVG_ROOT_TAG)
    return f"{svg[:start]}{PRESERVE_SPACES} {svg[start:]}"
