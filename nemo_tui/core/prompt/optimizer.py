"""Fitting a prompt into a model's token budget, and reporting exactly what was cut.

This is the optimizer's public face. When a prompt is over budget (and `context_truncation`
is on), `nemo_tui.core.prompt.fitter` shrinks it in stages, stopping as soon as it fits: collapse
whitespace, drop duplicates, drop boilerplate, then keep the text most relevant to the
question. The instructions (the first paragraph, when small) and the question (the end of the
prompt) are kept whole. Text is cut in whole sentences, table rows and code blocks
(`nemo_tui.core.prompt.segments`), so no cut falls inside a word or a code block, and each run of
dropped text is replaced by a visible marker (`ELISION_TEMPLATE`). Only when the instructions
and the question alone are over budget is the middle of the longer one cut, at word
boundaries, keeping the question's last sentence whole where possible. The result never
exceeds the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemo_tui.core.prompt.elision import ELISION_TEMPLATE, CutReason, CutSpan
from nemo_tui.core.prompt.fitter import fit_prompt
from nemo_tui.core.prompt.tokens import TokenCounter, estimate_tokens
from nemo_tui.errors import NemoError
from nemo_tui.units import format_count

__all__ = [
    "ELISION_TEMPLATE",
    "CutReason",
    "CutSpan",
    "OptimizedPrompt",
    "estimate_tokens",
    "optimize_prompt",
]


@dataclass(frozen=True)
class OptimizedPrompt:
    """The prompt to send, with what was done to it.

    Attributes:
        text: The prompt to send.
        original_tokens: Tokens in the prompt as given.
        optimized_tokens: Tokens in `text`.
        truncated: True when `text` differs from the prompt as given.
        cuts: The spans of the original prompt that were cut, in order.
    """

    text: str
    original_tokens: int
    optimized_tokens: int
    truncated: bool
    cuts: tuple[CutSpan, ...]

    @property
    def reduction_pct(self) -> float:
        """How much smaller the prompt got, in percent (0 to 100)."""
        if self.original_tokens <= 0:
            return 0.0
        saved = 1 - self.optimized_tokens / self.original_tokens
        return min(100.0, max(0.0, saved * 100))

    def to_json(self) -> dict[str, object]:
        """The result as JSON-ready data, for `--json` output and logs."""
        return {
            "original_tokens": self.original_tokens,
            "optimized_tokens": self.optimized_tokens,
            "reduction_pct": round(self.reduction_pct, 1),
            "truncated": self.truncated,
            "optimized_prompt": self.text,
            "cuts": [
                {"start": c.start, "end": c.end, "tokens": c.tokens, "reason": c.reason.value}
                for c in self.cuts
            ],
        }


def optimize_prompt(
    prompt: str,
    budget_tokens: int,
    *,
    question: str | None = None,
    enabled: bool = True,
    count_tokens: TokenCounter | None = None,
) -> OptimizedPrompt:
    """Fit a prompt into a token budget, keeping what the question is about.

    Args:
        prompt: The full prompt: instructions, material, then the question.
        budget_tokens: The most tokens the prompt may have (the context size less the room
            kept for the answer).
        question: The question, if known. Where it appears in the prompt, everything from its
            line on is kept whole; otherwise (and when None) the last paragraph is, and a
            given question still decides what is relevant.
        enabled: False returns the prompt unchanged even when it is over budget, leaving the
            decision to the caller (the `context_truncation` setting).
        count_tokens: An exact token counter from the backend; None uses `estimate_tokens`.

    Returns:
        The prompt to send; never more than `budget_tokens` when `enabled` is true.

    Raises:
        NemoError: `budget_tokens` is below 1.
    """
    if budget_tokens < 1:
        raise NemoError(
            f"the prompt budget is {format_count(budget_tokens)} tokens, so no prompt can fit",
            fix="raise the model's context size (num_ctx) or lower the room kept for the answer",
        )
    count = count_tokens or estimate_tokens
    original = count(prompt)
    if not enabled or original <= budget_tokens:
        return OptimizedPrompt(prompt, original, original, False, ())
    text, cuts = fit_prompt(prompt, budget_tokens, question, count, original)
    return OptimizedPrompt(text, original, count(text), text != prompt, cuts)
