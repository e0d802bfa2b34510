"""The cached models panel: every model resident in a backend, and the keys to manage them.

In a lab of several hosts each model's `Where` names its server and its host, this machine's
too (`ollama@local`, `ollama@gpu-box`): `f8` unloads the model from its own host, `f9` clears
this machine only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.content import Content

from nemo_tui.core.models.backend_names import backend_host, remote_backend_name
from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.ui.widgets.cursor_list import CursorList
from nemo_tui.units import format_count, format_mb, format_pct, format_seconds

if TYPE_CHECKING:
    from nemo_tui.core.models.cache_policy import CachedModel

COLUMNS = ("Model", "Where", "Size", "VRAM", "Ctx", "Expires", "Hits")
STARTING = "starting…"
"""What the table says until the backends were asked."""


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
        self._placeholder = STARTING
        self._local_host: str | None = None
        """This machine's name while the lab has other hosts; None without any."""
        self.border_title = "Cached models"
        self.border_subtitle = "f8 unload · f9 clear all"

    @property
    def models(self) -> tuple[CachedModel, ...]:
        """The models shown."""
        return self._models

    @property
    def selected(self) -> str | None:
        """The model under the cursor, or None when nothing is loaded."""
        model = self.selected_model
        return model.name if model is not None else None

    @property
    def selected_model(self) -> CachedModel | None:
        """The model under the cursor with its backend, or None when nothing is loaded."""
        if not self._models:
            return None
        return self._models[min(self.cursor, len(self._models) - 1)]

    def host_of(self, model: CachedModel) -> str | None:
        """The host holding a model, by name, in a lab of several hosts; None without one."""
        if self._local_host is None:
            return None
        return backend_host(model.backend) or self._local_host

    def set_local_host(self, name: str | None) -> None:
        """Show the host of each model (this machine is called `name`); None hides it again."""
        if name == self._local_host:
            return
        self._local_host = name
        self.border_subtitle = (
            "f8 unload · f9 clear all" if name is None else f"f8 unload · f9 clear {name}"
        )
        if self._placeholder != STARTING:
            self.show_models(self._models)

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
        kept = self.selected_model
        keep = (kept.backend, kept.name) if kept is not None else None
        self._models = tuple(sorted(models, key=lambda m: (m.backend, m.name)))
        moment = time.time() if now is None else now
        self._cells = [self._model_cells(model, moment) for model in self._models]
        self._widths = [max(map(len, column)) for column in zip(COLUMNS, *self._cells, strict=True)]
        self._placeholder = "no model loaded"
        shown = [(m.backend, m.name) for m in self._models]
        if keep in shown:
            self.cursor = shown.index(keep)
        self.cursor = self.validate_cursor(self.cursor)
        self.border_title = f"Cached models ({format_count(len(self._models))})"
        self.refresh(layout=True)

    def _model_cells(self, model: CachedModel, now: float) -> tuple[str, ...]:
        cells = _cells(model, now)
        if self._local_host is None or backend_host(model.backend) is not None:
            return cells
        # This machine's server, named like the other hosts' ones.
        return (cells[0], remote_backend_name(model.backend, self._local_host), *cells[2:])

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
