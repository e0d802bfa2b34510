"""The main screen's keys around the question and its answer: data file, cuts, copy, save.

Copy and save act on what the pane shows: the script when one is on screen (the runnable part
of an analysis answer), else the answer.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.screen import Screen

from nemo_tui.core.text.text_file import save_text
from nemo_tui.ui.messages import AnswerSaved
from nemo_tui.ui.widgets.query_pane import ENGINE_STARTING, QueryPane


class QueryActions(Screen[None]):
    """The question and answer actions, mixed into `MainScreen`.

    They act on the query pane only, through dialogs of their own, imported when first opened.
    """

    def action_attach(self) -> None:
        """Ask for a data file to attach (empty detaches it)."""
        from nemo_tui.ui.screens.path_prompt import PathPrompt

        pane = self.query_one(QueryPane)

        def attached(path: str | None) -> None:
            if path is not None:
                pane.attach(Path(path) if path else None)

        current = str(pane.data_file) if pane.data_file else ""
        self.app.push_screen(
            PathPrompt(
                "Attach a data file",
                "A CSV, TSV or JSON-lines file to summarize into the prompt. Empty detaches.",
                value=current,
                must_exist=True,
                allow_empty=True,
            ),
            attached,
        )

    def action_review_prompt(self) -> None:
        """Show what the optimizer cut from the typed question."""
        from nemo_tui.ui.screens.prompt_review import PromptReview

        pane = self.query_one(QueryPane)
        if not pane.ready:
            self.notify(ENGINE_STARTING, severity="warning")
            return
        pane.refresh_plan()
        if pane.plan is None:
            self.notify("Type a question first.", severity="warning")
            return
        self.app.push_screen(PromptReview(pane.plan))

    def _shown_text(self) -> tuple[str, str]:
        """What copy and save take, and what to call it: the script on screen, or the answer."""
        pane = self.query_one(QueryPane)
        script = pane.script
        if script is not None:
            return script.code, "script"
        return pane.answer, "answer"

    def action_copy_answer(self) -> None:
        """Copy the answer, or the script on screen, to the terminal's clipboard (OSC 52,
        works over SSH)."""
        text, what = self._shown_text()
        if not text:
            self.notify(f"There is no {what} to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(
            f"Copied the {what}, {len(text):,} characters. If nothing arrives, your terminal may"
            f" block clipboard writes (OSC 52); save the {what} with ctrl+o instead."
        )

    def action_save_answer(self) -> None:
        """Ask for a file name (and before replacing a file), then write the answer, or the
        script on screen, there."""
        from nemo_tui.ui.screens.path_prompt import PathPrompt

        text, what = self._shown_text()
        if not text:
            self.notify(f"There is no {what} to save yet.", severity="warning")
            return
        prompt = PathPrompt(
            f"Save the {what}",
            f"The {what} is saved as {'Python' if what == 'script' else 'Markdown'}.",
            value="analysis.py" if what == "script" else "answer.md",
            ask_before_replacing=True,
        )

        def save(path: str | None) -> None:
            if path:
                self._write_answer(Path(path), text, what, replace=prompt.replace_agreed)

        self.app.push_screen(prompt, save)

    @work(thread=True, group="save-answer", exit_on_error=False, description="Saving the file")
    def _write_answer(self, path: Path, text: str, what: str, *, replace: bool) -> None:
        # A slow disk or a network folder must not stall the dashboard; a failure reaches the
        # screen's worker-failure notice, naming the path.
        self.post_message(AnswerSaved(save_text(path, text, replace=replace), what))

    def on_answer_saved(self, message: AnswerSaved) -> None:
        """Say where the text went, and whether characters had to be replaced."""
        saved = message.saved
        if saved.replaced_characters:
            self.notify(
                f"Saved the {message.what} to {saved.path}; {saved.replaced_characters:,}"
                " character(s)"
                " that UTF-8 cannot hold (lone surrogates) were written as \ufffd.",
                severity="warning",
                markup=False,
            )
        else:
            self.notify(f"Saved the {message.what} to {saved.path}.", markup=False)
