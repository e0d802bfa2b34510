"""`nemo-tui` with no command: open the dashboard.

Textual is imported here, inside the command, so the other commands never pay for it; the
engine is imported later still, by the app, after its first frame.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import TYPE_CHECKING

from nemo_tui.cli.context import CommandContext, make_context

if TYPE_CHECKING:
    from nemo_tui.engine import Engine


def run_dashboard(args: argparse.Namespace) -> int:
    """Run the dashboard until the user quits; it builds the engine from the config itself.

    `--theme NAME` is used now and remembered in the config file's `ui.theme`.

    Raises:
        ConfigError: the config file is missing or invalid.
        UsageError: a `--simulate-*` size cannot be parsed.
    """
    from nemo_tui.ui.app import create_app

    ctx = make_context(args)
    app = create_app(
        ctx.config, partial(engine_for, ctx), config_path=ctx.config_path, theme=args.theme
    )
    app.run()
    return app.return_code or 0


def engine_for(ctx: CommandContext) -> Engine:
    """The dashboard's engine: the context's config, sampler and catalog, backends from config.

    Called by the app in a worker thread, so importing the engine does not delay the first frame.
    """
    from nemo_tui.engine import Engine

    return Engine(ctx.config, sampler=ctx.sampler, catalog=ctx.catalog)
