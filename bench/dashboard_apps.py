"""The programs `bench_dashboard.py` starts: `bare`, `nemo`, and the fake Ollama server.

Run as `python bench/dashboard_apps.py bare|nemo|ollama-fixture`:

- `bare`: a Textual app that shows one label and imports nothing but Textual;
- `nemo`: `nemo-tui` with no arguments, exactly: the configured backends (by default the embedded
  model, and Ollama probed at `$OLLAMA_HOST`, which the benchmark points at a dead port or at the
  fake server);
- `ollama-fixture`: the fake Ollama server of the tests (`tests.fakes.FakeOllama`) in its own
  process, so it does not share the measured app's interpreter; it prints its URL and serves
  until its standard input closes.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_bare() -> None:
    """A Textual app that shows one label."""
    from textual.app import App, ComposeResult
    from textual.widgets import Label

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Label("bare app ready")

    Bare().run()


def run_nemo() -> int:
    """`nemo-tui` with no arguments, through the command's own function."""
    from nemo_tui.cli.dashboard import run_dashboard
    from nemo_tui.cli.parser import build_parser

    return run_dashboard(build_parser().parse_args([]))


def serve_ollama_fixture() -> None:
    """The fake Ollama server until standard input closes; its URL is the first line printed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fakes import FakeOllama

    with FakeOllama() as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    if sys.argv[1:] == ["bare"]:
        run_bare()
    elif sys.argv[1:] == ["nemo"]:
        sys.exit(run_nemo())
    elif sys.argv[1:] == ["ollama-fixture"]:
        serve_ollama_fixture()
    else:
        sys.exit("usage: dashboard_apps.py bare|nemo|ollama-fixture")
