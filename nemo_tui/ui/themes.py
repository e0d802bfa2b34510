"""Dashboard themes: YAML files turned into Textual `Theme` objects.

The bundled themes (`nemo-dark`, `nemo-light`, `nemo-high-contrast`) are files users can copy and
edit; a file in the user themes dir with the same name wins over a bundled one. Each file is
checked (unknown keys, colours that do not parse); a broken one is skipped and reported, and the
app falls back to the default theme with a notification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import yaml
from textual.color import Color, ColorParseError
from textual.theme import Theme

from nemo_tui.config import load_yaml
from nemo_tui.errors import NemoError

DEFAULT_THEME = "nemo-dark"
"""The theme used when the config names none, or names one that cannot be used."""
LAST_RESORT_THEME = "textual-dark"
"""Textual's own theme, for when even the default theme file is missing or broken."""

GAUGE_VARIABLES = {
    "gauge-ok": "#4ebf71",
    "gauge-warn": "#ffa62b",
    "gauge-crit": "#ba3c5b",
    "gauge-empty": "#3a3a3a",
}
"""The theme variables the dashboard adds, with values for themes that do not set them."""


class ThemeFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The schema of a theme file; colours are CSS colours such as `#3fa7d6`."""

    name: str
    """The name `--theme` and the command palette use."""
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None
    dark: bool = True
    luminosity_spread: float = 0.15
    text_alpha: float = 0.95
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra variables such as `gauge-ok`, `gauge-warn`, `gauge-crit`, `gauge-empty`."""


_COLOUR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


class ThemeFileError(NemoError):
    """A theme file that cannot be used; the message names the file and the problem."""

    title = "Broken theme file"

    def __init__(self, message: str) -> None:
        super().__init__(message, fix="fix or remove the file; the default theme is used meanwhile")


@dataclass(frozen=True)
class ThemeSet:
    """The themes found on disk, and what was wrong with the files that were skipped."""

    themes: tuple[Theme, ...]
    problems: tuple[str, ...]


def load_theme_file(path: Path) -> Theme:
    """Read and check one theme file.

    Raises:
        ThemeFileError: the file cannot be read, is not YAML, has unknown keys or a bad colour.
    """
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
        spec = msgspec.convert(data, ThemeFile, strict=True)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ThemeFileError(f"{path.name}: {exc}") from exc
    colours = {name: getattr(spec, name) for name in _COLOUR_FIELDS}
    for key, value in [*colours.items(), *spec.variables.items()]:
        if value is None:
            continue
        try:
            Color.parse(value)
        except ColorParseError as exc:
            raise ThemeFileError(f"{path.name}: {key}: '{value}' is not a colour") from exc
    return Theme(
        name=spec.name,
        dark=spec.dark,
        luminosity_spread=spec.luminosity_spread,
        text_alpha=spec.text_alpha,
        variables={**GAUGE_VARIABLES, **spec.variables},
        **colours,
    )


def load_themes(folders: Sequence[Path]) -> ThemeSet:
    """Load every `*.yaml` theme in the folders; later folders override earlier ones by name.

    Args:
        folders: Bundled themes first, then the user's; missing folders are skipped.

    Returns:
        The themes that loaded, and one line per file that did not.
    """
    by_name: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as exc:
                problems.append(exc.message)
                continue
            by_name[theme.name] = theme
    return ThemeSet(tuple(by_name.values()), tuple(problems))
