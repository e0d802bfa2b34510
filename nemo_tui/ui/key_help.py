"""The lines of the help screen: a key, what it does, and where it works."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class KeyHelp:
    """One line of the help table."""

    keys: str
    """The keys, as the footer shows them, e.g. `f1 / ?`."""
    description: str
    where: str
    """Where the keys work: `anywhere`, or the panel that must have focus."""


def key_help(
    bindings: Iterable[BindingType], where: str, display: dict[str, str] | None = None
) -> list[KeyHelp]:
    """Lines for a list of bindings; several keys for one action share a line.

    Args:
        bindings: A `BINDINGS` list.
        where: Where they work.
        display: Key names to show differently (e.g. `question_mark` -> `?`).
    """
    names = display or {}
    grouped: dict[str, tuple[list[str], str]] = {}
    for binding in Binding.make_bindings(bindings):
        keys, text = grouped.setdefault(
            binding.action, ([], binding.tooltip or binding.description)
        )
        keys.append(names.get(binding.key, binding.key))
    return [KeyHelp(" / ".join(keys), text, where) for keys, text in grouped.values()]
