"""`nemo-tui` with no command: open the dashboard.

Textual is imported here, inside the command, so the other commands never pay for it; the
engine is imported later still, by the app, after its first frame.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from nemo_tui.cli.context import CommandContext, make_context
from nemo_tui.ui.collector import Pause, pause_collection, resume_collection

if TYPE_CHECKING:
    from nemo_tui.engine import Engine


def run_dashboard(
    args: argparse.Namespace, build_engine: Callable[[CommandContext], Engine] | None = None
) -> int:
    """Run the dashboard until the user quits; it builds the engine from the config itself.

    `--theme NAME` is used now and remembered in the config file's `ui.theme`.

    Args:
        args: The parsed command line.
        build_engine: Builds the engine from the context; `engine_for` unless a caller (the
            start-up benchmark) brings its own backends.

    Raises:
        ConfigError: the config file is missing or invalid, or settings changed in the
            dashboard could not be saved to it.
        UsageError: a `--simulate-*` size cannot be parsed.
    """
    pause_collection(Pause.START_UP)
    try:
        ctx = make_context(args)
        from nemo_tui.ui.app import create_app

        app = create_app(
            ctx.config,
            partial(build_engine or engine_for, ctx),
            sampler=ctx.sampler,
            config_path=ctx.config_path,
            theme=args.theme,
        )
        app.run()
    finally:
        resume_collection(Pause.START_UP)
    if app.settings_not_saved is not None:
        # Said here, on the terminal, because the dashboard that would have shown it is gone.
        raise app.settings_not_saved
    return app.return_code or 0


def engine_for(ctx: CommandContext) -> Engine:
    """The dashboard's engine: the context's config, sampler and catalog, backends from config,
    and the metrics history the commands keep too (so `stats` counts the dashboard's queries).

    Called by the app in a worker thread, so importing the engine does not delay the first frame.
    """
    from nemo_tui import paths
    from nemo_tui.engine import Engine

    return Engine(
        ctx.config, sampler=ctx.sampler, catalog=ctx.catalog, history_path=paths.history_file()
    )
