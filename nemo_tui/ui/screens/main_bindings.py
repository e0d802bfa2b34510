"""The main screen's keys: what each one does, and which ones the footer shows.

The help screen and the command palette list these too, so each binding carries a tooltip that
reads as a sentence.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

MAIN_BINDINGS: list[BindingType] = [
    Binding("f1,question_mark", "app.help", "Help", tooltip="Show every key binding"),
    # Not a priority binding: a priority key jumps ahead of characters still queued for the
    # question box, so "type then ctrl+s" in one burst (a paste, a fast typist) sent nothing.
    # The TextArea has no ctrl+s of its own, so the key reaches the screen after the text.
    Binding("ctrl+s", "send", "Send", tooltip="Send the question"),
    # The rest are priority bindings: the question box (a TextArea) must not swallow them.
    Binding(
        "escape",
        "cancel",
        "Cancel",
        priority=True,
        tooltip="Cancel the running query, or stop a running script",
    ),
    Binding(
        "f2",
        "app.stats",
        "Stats",
        priority=True,
        tooltip="Show the full stats and backend health",
    ),
    Binding(
        "ctrl+t", "attach", "Data", priority=True, tooltip="Attach a data file to the question"
    ),
    # ctrl+n, ctrl+l and f12: the question box binds most other ctrl keys (ctrl+b is tmux's).
    Binding(
        "ctrl+n",
        "toggle_analysis",
        "Analysis",
        priority=True,
        tooltip="Analysis mode: the next question asks for a script",
    ),
    Binding(
        "ctrl+g",
        "copy_answer",
        "Copy",
        priority=True,
        tooltip="Copy the answer or the script (OSC 52 clipboard)",
    ),
    Binding(
        "ctrl+o",
        "save_answer",
        "Save",
        priority=True,
        tooltip="Save the answer or the script to a file",
    ),
    Binding(
        "f5",
        "refresh",
        "Refresh",
        priority=True,
        tooltip="Sample memory and ask the backends now",
    ),
    Binding("f6", "toggle_side", "Panels", priority=True, tooltip="Hide or show the side panels"),
    Binding(
        "f7",
        "toggle_plot",
        "Plot",
        priority=True,
        tooltip="Hide or show the memory history plot",
    ),
    # Shown in the subtitle of the panel they act on rather than in the footer.
    Binding(
        "ctrl+l",
        "run_script",
        "Run",
        show=False,
        priority=True,
        tooltip="Run the script on screen in a limited child process",
    ),
    Binding(
        "f12",
        "repair_script",
        "Repair",
        show=False,
        priority=True,
        tooltip="Ask the model once to fix the script that failed",
    ),
    Binding(
        "f3",
        "accept_recommendation",
        "Use recommendation",
        show=False,
        priority=True,
        tooltip="Select the recommended model for the next query",
    ),
    Binding(
        "f4",
        "preload",
        "Preload",
        show=False,
        priority=True,
        tooltip="Preload the selected model, or the recommended one",
    ),
    Binding(
        "f8",
        "unload",
        "Unload",
        show=False,
        priority=True,
        tooltip="Unload the model under the cached-models cursor",
    ),
    Binding(
        "f9",
        "clear_cache",
        "Clear cache",
        show=False,
        priority=True,
        tooltip="Unload every model",
    ),
    Binding(
        "ctrl+r",
        "review_prompt",
        "Cuts",
        show=False,
        priority=True,
        tooltip="Show what the optimizer cut",
    ),
    Binding(
        "ctrl+f",
        "fix",
        "Fix",
        show=False,
        priority=True,
        tooltip="Apply the troubleshooting fix",
    ),
]
"""Every key of the main screen, in the order the footer and the help screen list them."""
