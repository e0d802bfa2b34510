"""The troubleshooting panel: known problems the figures show, in plain words, with a fix key."""

from __future__ import annotations

from collections.abc import Sequence

from textual.markup import escape
from textual.widgets import Static

from nemo_tui.core.reports.troubleshooting import Action, Symptom

ACTION_LABELS: dict[Action, str] = {
    Action.CLEAR_CACHE: "clear the model cache",
    Action.ENABLE_TRUNCATION: "turn on context truncation",
    Action.LIGHTER_MODEL: "switch to a lighter model",
    Action.ENABLE_BATCH_OPTIMIZATION: "turn on batch optimization",
    Action.ENABLE_MEMORY_MAPPING: "turn on memory mapping",
    Action.ENABLE_GARBAGE_COLLECTION: "turn on garbage collection",
}
"""What the fix key does, per action."""


class TroubleshootingPanel(Static):
    """Shown only while a symptom shows; `ctrl+f` applies the first symptom's fix."""

    DEFAULT_CSS = """
    TroubleshootingPanel {
        height: auto;
        display: none;
        border: round $warning;
        padding: 0 1;
    }
    TroubleshootingPanel.-active {
        display: block;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._symptoms: tuple[Symptom, ...] = ()
        self.border_title = "Troubleshooting"

    @property
    def symptoms(self) -> tuple[Symptom, ...]:
        """What shows now."""
        return self._symptoms

    @property
    def action(self) -> Action | None:
        """The fix `ctrl+f` applies: the first symptom's that has one."""
        return next((s.action for s in self._symptoms if s.action is not None), None)

    def show(self, symptoms: Sequence[Symptom]) -> None:
        """Draw the symptoms; the panel hides when there are none."""
        self._symptoms = tuple(symptoms)
        self.set_class(bool(symptoms), "-active")
        if not symptoms:
            self.update("")
            return
        lines: list[str] = []
        for symptom in symptoms:
            lines.append(f"[b $warning]{escape(symptom.title)}[/]: {escape(symptom.evidence)}")
            lines.extend(f"  • {escape(remedy)}" for remedy in symptom.remedies)
        action = self.action
        if action is not None:
            lines.append(f"[b]ctrl+f[/b] {ACTION_LABELS[action]}")
        self.border_subtitle = "ctrl+f fix" if action is not None else ""
        self.update("\n".join(lines))
