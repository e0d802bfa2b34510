"""The programs `bench_dashboard.py` starts in tmux: `bare` and `nemo`.

Run as `python bench/dashboard_apps.py bare|nemo`:

- `bare`: a Textual app that shows one label and imports nothing but Textual;
- `nemo`: `nemo-tui` with no arguments, exactly: the configured backends (by default the embedded
  model, and Ollama probed at `$OLLAMA_HOST`, which the benchmark points at a dead port or at the
  fake server, `bench/fake_ollama_process.py`).
"""

from __future__ import annotations

import sys


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


if __name__ == "__main__":
    if sys.argv[1:] == ["bare"]:
        run_bare()
    elif sys.argv[1:] == ["nemo"]:
        sys.exit(run_nemo())
    else:
        sys.exit("usage: dashboard_apps.py bare|nemo")
