"""The two programs `bench_dashboard.py` starts in tmux: `bare` or `nemo`.

Run as `python bench/dashboard_apps.py bare|nemo`. Each imports only what it runs: the bare app
nothing but Textual, the dashboard what `nemo-tui` imports.
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


if __name__ == "__main__":
    if sys.argv[1:] == ["bare"]:
        run_bare()
    elif sys.argv[1:] == ["nemo"]:
        sys.exit(run_nemo())
    else:
        sys.exit("usage: dashboard_apps.py bare|nemo")
