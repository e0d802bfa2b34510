"""The programs `bench_dashboard.py` starts in tmux: `bare`, `nemo` or `real`.

Run as `python bench/dashboard_apps.py bare|nemo|real`. Each imports only what it runs: the bare
app nothing but Textual, the dashboards what `nemo-tui` imports (`nemo` with one in-process fake
backend, `real` with the configured ones).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nemo_tui.cli.context import CommandContext
    from nemo_tui.engine import Engine


def run_bare() -> None:
    """A Textual app that shows one label."""
    from textual.app import App, ComposeResult
    from textual.widgets import Label

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Label("bare app ready")

    Bare().run()


def run_nemo() -> int:
    """`nemo-tui` with no arguments, through the same function; only the backends differ: one
    in-process fake instead of the configured servers."""
    from nemo_tui.cli.dashboard import run_dashboard
    from nemo_tui.cli.parser import build_parser

    def build_engine(ctx: CommandContext) -> Engine:
        from dashboard_backend import StreamingBackend

        from nemo_tui.engine import Engine

        return Engine(
            ctx.config, sampler=ctx.sampler, catalog=ctx.catalog, backends=[StreamingBackend()]
        )

    return run_dashboard(build_parser().parse_args([]), build_engine)


def run_real() -> int:
    """`nemo-tui` with no arguments, exactly: the configured backends (by default the embedded
    model, and Ollama probed at its default address)."""
    from nemo_tui.cli.dashboard import run_dashboard
    from nemo_tui.cli.parser import build_parser

    return run_dashboard(build_parser().parse_args([]))


if __name__ == "__main__":
    if sys.argv[1:] == ["bare"]:
        run_bare()
    elif sys.argv[1:] == ["nemo"]:
        sys.exit(run_nemo())
    elif sys.argv[1:] == ["real"]:
        sys.exit(run_real())
    else:
        sys.exit("usage: dashboard_apps.py bare|nemo|real")
