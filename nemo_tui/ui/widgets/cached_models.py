"""The cached models panel: every model resident in a backend, and the keys to manage them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.content import Content

from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.widgets.cursor_list import CursorList
from nemo_tui.units import format_count, format_mb, format_pct, format_seconds

if TYPE_CHECKING:
    from nemo_tui.core.models.cache_policy import CachedModel

COLUMNS = ("Model", "Where", "Size", "VRAM", "Ctx", "Expires", "Hits")


def expires_in(model: CachedModel, now: float) -> str:
    """`4m 10s`, `never` (or unknown), or `due` once the time has passed."""
    if model.expires_at is None:
        return "never"
    left = model.expires_at - now
    return format_seconds(left) if left > 0 else "due"


class CachedModelsPanel(CursorList):
    """A table of resident models; the row under the cursor is the one `f8` unloads.

    Until the first `show_models` nobody has asked the backends, and the table says so.
    """

    DEFAULT_CSS = """
    CachedModelsPanel {
        border: round $primary 50%;
        padding: 0 1;
    }
    CachedModelsPanel:focus {
        border: round $primary;
    }
    CachedModelsPanel > .cursor-list--header {
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._models: tuple[CachedModel, ...] = ()
        self._cells: list[tuple[str, ...]] = []
        self._widths = [len(title) for title in COLUMNS]
        """Each column's width: its widest cell, title included."""
        self._placeholder = "starting…"
        self.border_title = "Cached models"
        self.border_subtitle = "f8 unload · f9 clear all"

    @property
    def models(self) -> tuple[CachedModel, ...]:
        """The models shown."""
        return self._models

    @property
    def selected(self) -> str | None:
        """The model under the cursor, or None when nothing is loaded."""
        if not self._models:
            return None
        return self._models[min(self.cursor, len(self._models) - 1)].name

    def header(self) -> Content:
        """The column titles."""
        return self._line(COLUMNS)

    def rows(self) -> list[Content]:
        """A line per model, or one saying there is none (or that nobody has asked yet)."""
        if not self._cells:
            return [Content(self._placeholder)]
        return [self._line(cells) for cells in self._cells]

    def show_models(self, models: Sequence[CachedModel], *, now: float | None = None) -> None:
        """Replace the rows, keeping the cursor on the same model where it is still loaded."""
        keep = self.selected
        self._models = tuple(sorted(models, key=lambda m: (m.backend, m.name)))
        moment = time.time() if now is None else now
        self._cells = [_cells(model, moment) for model in self._models]
        self._widths = [max(map(len, column)) for column in zip(COLUMNS, *self._cells, strict=True)]
        self._placeholder = "no model loaded"
        names = [m.name for m in self._models]
        if keep in names:
            self.cursor = names.index(keep)
        self.cursor = self.validate_cursor(self.cursor)
        self.border_title = f"Cached models ({format_count(len(self._models))})"
        self.refresh(layout=True)

    def _line(self, cells: Sequence[str]) -> Content:
        padded = (cell.ljust(width) for cell, width in zip(cells, self._widths, strict=True))
        return Content("  ".join(padded))


def _cells(model: CachedModel, now: float) -> tuple[str, ...]:
    vram = f"{format_mb(model.vram_mb)} ({format_pct(model.vram_share)})" if model.vram_mb else "-"
    return (
        strip_terminal_controls(model.name),
        model.backend,
        # Some servers (vLLM) report no size: that is not a measured 0 MB.
        format_mb(model.size_mb) if model.size_mb is not None else "unknown",
        vram,
        format_count(model.context_length) if model.context_length else "-",
        expires_in(model, now),
        format_count(model.hits),
    )
