"""The cached models panel: every model resident in a backend, and the keys to manage them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.widgets import DataTable

from nemo_tui.units import format_count, format_mb, format_pct, format_seconds

if TYPE_CHECKING:
    from nemo_tui.core.cache_policy import CachedModel

COLUMNS = ("Model", "Where", "Size", "VRAM", "Ctx", "Expires", "Hits")


def expires_in(model: CachedModel, now: float) -> str:
    """`4m 10s`, `never` (or unknown), or `due` once the time has passed."""
    if model.expires_at is None:
        return "never"
    left = model.expires_at - now
    return format_seconds(left) if left > 0 else "due"


class CachedModelsPanel(DataTable[str]):
    """A table of resident models; the row under the cursor is the one `f8` unloads."""

    DEFAULT_CSS = """
    CachedModelsPanel {
        height: auto;
        max-height: 10;
        border: round $primary 50%;
    }
    CachedModelsPanel:focus {
        border: round $primary;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._models: tuple[CachedModel, ...] = ()
        self.border_title = "Cached models"
        self.border_subtitle = "f8 unload · f9 clear all"
        self.add_columns(*COLUMNS)
        # Until the first `show_models` nobody has asked the backends. Kept no wider than the
        # "no model loaded" row: the table never narrows a column it has widened.
        self.add_row("starting…", "", "", "", "", "", "", key="-empty-")

    @property
    def models(self) -> tuple[CachedModel, ...]:
        """The models shown."""
        return self._models

    @property
    def selected(self) -> str | None:
        """The model under the cursor, or None when nothing is loaded."""
        if not self._models:
            return None
        row = min(max(self.cursor_row, 0), len(self._models) - 1)
        return self._models[row].name

    def show_models(self, models: Sequence[CachedModel], *, now: float | None = None) -> None:
        """Replace the rows, keeping the cursor on the same model where it is still loaded."""
        keep = self.selected
        self._models = tuple(sorted(models, key=lambda m: (m.backend, m.name)))
        moment = time.time() if now is None else now
        self.clear()
        for model in self._models:
            vram = (
                f"{format_mb(model.vram_mb)} ({format_pct(model.vram_share)})"
                if model.vram_mb
                else "-"
            )
            context = format_count(model.context_length) if model.context_length else "-"
            self.add_row(
                model.name,
                model.backend,
                format_mb(model.size_mb),
                vram,
                context,
                expires_in(model, moment),
                format_count(model.hits),
                key=f"{model.backend}/{model.name}",
            )
        if not self._models:
            self.add_row("no model loaded", "", "", "", "", "", "", key="-empty-")
        names = [m.name for m in self._models]
        if keep in names:
            self.move_cursor(row=names.index(keep))
        self.border_title = f"Cached models ({format_count(len(self._models))})"
