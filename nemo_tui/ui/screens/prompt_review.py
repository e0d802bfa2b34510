"""The prompt review screen: what the optimizer cut from the prompt, and the prompt as sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from nemo_tui.units import format_count, format_pct

if TYPE_CHECKING:
    from nemo_tui.engine import QueryPlan

EXCERPT_CHARS = 160
"""How much of each cut span is quoted."""


def describe_cuts(plan: QueryPlan) -> str:
    """One paragraph per cut: why, how many tokens, and the start of what was removed."""
    opt = plan.optimized
    head = (
        f"{format_count(opt.original_tokens)} → {format_count(opt.optimized_tokens)} tokens"
        f" ({format_pct(opt.reduction_pct / 100)} smaller) to fit a budget of"
        f" {format_count(plan.budget_tokens)} tokens for {plan.recommendation.model}."
    )
    if not opt.cuts:
        return head + "\nNothing was cut."
    lines = [head, ""]
    for cut in opt.cuts:
        excerpt = " ".join(plan.prompt[cut.start : cut.end].split())
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
        lines.append(f"- {cut.reason.value}, {format_count(cut.tokens)} tokens: {excerpt}")
    return "\n".join(lines)


class PromptReview(ModalScreen[None]):
    """The cuts on top, the optimized prompt below; Esc closes."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", show=False)]

    DEFAULT_CSS = """
    PromptReview {
        align: center middle;
    }
    PromptReview > Vertical {
        width: 95%;
        height: 95%;
        border: round $primary;
        background: $surface;
    }
    PromptReview #cuts {
        height: 1fr;
    }
    PromptReview #prompt-as-sent {
        height: 1fr;
    }
    """

    def __init__(self, plan: QueryPlan) -> None:
        super().__init__()
        self._plan = plan

    def compose(self) -> ComposeResult:
        """Cuts, then the prompt as it will be sent (read-only)."""
        with Vertical() as box:
            box.border_title = "What the optimizer cut (Esc closes)"
            with VerticalScroll(id="cuts"):
                yield Static(Content(describe_cuts(self._plan)))
            area = TextArea(
                self._plan.optimized.text, read_only=True, soft_wrap=True, id="prompt-as-sent"
            )
            area.border_title = "Prompt as sent"
            yield area
