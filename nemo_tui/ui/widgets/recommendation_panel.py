"""The "Recommended model" panel: the model, why, whether it fits, and what comes after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

from nemo_tui.ui.server_text import template
from nemo_tui.units import format_count, format_mb

if TYPE_CHECKING:
    from nemo_tui.core.models.recommender import Recommendation


def describe_change(old: Recommendation, new: Recommendation) -> str:
    """One sentence for the notification when the recommendation changes."""
    return f"{old.model} → {new.model}: {new.reason}"


class RecommendationPanel(Static):
    """What the recommender picks for a medium query on this machine now."""

    DEFAULT_CSS = """
    RecommendationPanel {
        height: auto;
        border: round $primary 50%;
        padding: 0 1;
    }
    RecommendationPanel.-no-fit {
        border: round $error;
    }
    RecommendationPanel.-folded {
        border: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        # The pick needs the engine's first probe of the backends.
        starting = Content.from_markup("[dim]starting the engine…[/]")
        super().__init__(starting, id=id)
        self._full = starting
        """The whole panel as `show` last made it."""
        self._summary = Content.from_markup("[b]Recommended[/b] [dim]starting the engine…[/]")
        """The folded panel's line."""
        self._shown: Content = starting
        """What is drawn now: `_full`, or `_summary` while folded."""
        self._folded = False
        self.border_title = "Recommended model"
        self.border_subtitle = "f3 use it · f4 preload"

    def fold(self, folded: bool) -> None:
        """Fold to a one-line summary (True) or show the whole panel again."""
        self._folded = folded
        self.set_class(folded, "-folded")
        self._draw()

    def _draw(self) -> None:
        shown = self._summary if self._folded else self._full
        # The pick is asked for again every refresh interval and mostly comes back the same;
        # drawing it again would repaint the panel, and send it to the terminal, for nothing.
        if not shown.is_same(self._shown):
            self._shown = shown
            self.update(shown)

    def show(self, rec: Recommendation) -> None:
        """Draw a recommendation."""
        where = "cloud" if not rec.local else f"{rec.tier.value} tier"
        fits = "[$success]fits[/]" if rec.fits else "[$error]does not fit[/]"
        size = f", needs {format_mb(rec.estimate.total_mb)}" if rec.estimate else ""
        lines = [
            template(
                f"[bold]$model[/] ({where}, $backend) · {fits}{size}",
                model=rec.model,
                backend=rec.backend,
            ),
            template("[dim]Why[/] $reason", reason=rec.reason),
            template(f"[dim]Context[/] {format_count(rec.num_ctx)} tokens"),
        ]
        if rec.fallbacks:
            lines.append(template("[dim]Then[/] $models", models=" → ".join(rec.fallbacks)))
        if rec.evict:
            lines.append(
                template("[dim]Makes room by unloading[/] $models", models=", ".join(rec.evict))
            )
        if rec.install_hint:
            lines.append(template("[dim]Tip[/] $hint", hint=rec.install_hint))
        self.set_class(not rec.fits, "-no-fit")
        self._full = Content("\n").join(lines)
        self._summary = template(
            f"[b]Recommended[/b] [bold]$model[/] · {fits}{size} · f3 use it", model=rec.model
        )
        self._draw()
