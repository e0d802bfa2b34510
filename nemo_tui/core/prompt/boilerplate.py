"""Recognising boilerplate: copyright, disclaimer, cookie, newsletter and navigation lines."""

from __future__ import annotations

import re

CUES = (
    "©",
    "(c)",
    "copyright",
    "rights reserved",
    "disclaimer",
    "informational",
    "constitute",
    "privacy",
    "terms of",
    "cookie",
    "subscribe",
    "newsletter",
    "click here",
    "skip to",
    "back to top",
    "follow us",
    "share ",
    "trademark",
    "confidential",
    "page ",
    " | ",
    " » ",
    " › ",
    " • ",
    " · ",
    " > ",
    " / ",
)
"""Every boilerplate text contains one of these (in lower case), so a fast substring search
for them finds the few sentences worth testing with `is_boilerplate`."""

_BOILERPLATE = re.compile(
    r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|\bdisclaimer\b|"
    r"for informational purposes only|does not constitute .{0,20}advice|"
    r"privacy policy|terms of (?:use|service)|\bcookies?\b|unsubscribe|subscribe to our|"
    r"newsletter|click here|skip to (?:main )?content|back to top|follow us on|"
    r"share (?:this|on)\b|all trademarks|this (?:e-?mail|message) .{0,40}confidential|"
    r"^page \d+ of \d+$",
    re.IGNORECASE,
)
_NAV_SEPARATOR = re.compile(r"\s(?:[|»›•·>/])\s")


def is_boilerplate(text: str) -> bool:
    """True for a copyright, disclaimer, cookie or newsletter line, or a navigation bar.

    Args:
        text: One sentence or line.

    Returns:
        Whether the text is boilerplate that can go before anything else.
    """
    if _BOILERPLATE.search(text):
        return True
    # A navigation bar: four or more short items between separators ("Home | About | ...").
    pieces = _NAV_SEPARATOR.split(text)
    return len(pieces) >= 4 and all(len(p.split()) <= 4 for p in pieces)
